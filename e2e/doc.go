// Package e2e holds Tandem's end-to-end tests: the real tandem binary as
// the gateway, a private OpenSSH sshd on loopback as the target, and the
// OpenSSH clients (ssh, scp, sftp, rsync) a person uses, each with its own
// ssh_config.
//
// The tests need the programs that scripts/test-deps.sh installs; without
// them they skip, except under CI=true, where they fail. Run them with
// `make test` (everything) or `go test ./e2e/`.
package e2e
