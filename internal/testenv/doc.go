// Package testenv provides helpers for tests that run Tandem against real
// programs: a private OpenSSH sshd on loopback as the target, the tandem
// binary as the gateway, and OpenSSH clients (ssh, scp, sftp, rsync) with
// their own ssh_config per test person.
//
// Tests use the helpers that take a testing.TB. Every process such a
// helper starts is owned by the test that asked for it and is stopped by
// PID in t.Cleanup; every wait has a deadline and polls instead of
// sleeping for a fixed time. The benchmark (bench/cmd/tandem-bench) sets
// up the same way through the forms that return errors (FindProgram,
// NewKeyPair, PickPort, PrepareSSHD, WriteClient, WriteConfig) and starts
// and stops its processes itself.
//
// Configurations are built from the config types (NewConfig, Person) and
// written with config.Marshal (WriteConfig), never as hand-written YAML.
//
// Missing programs skip the test with an install hint, except under CI=true,
// where they fail it: a CI run that silently skips its end-to-end tests
// proves nothing.
package testenv
