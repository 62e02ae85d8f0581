#!/usr/bin/env bash
# Runs Tandem's benchmark suite (issue 8): builds the gateway and the
# benchmark program, then measures direct OpenSSH against Tandem on
# loopback and prints a Markdown report on stdout (progress on stderr).
#
#   bench/run.sh                 # full run, about 6-10 minutes
#   bench/run.sh -quick          # smoke run, about 20 seconds
#   bench/run.sh -only a,c -out /tmp/bench.md
#   TANDEM_BIN=/path/to/tandem bench/run.sh   # use a prebuilt gateway
#
# Needs: go, openssh-server, openssh-client (Debian packages); root, or a
# user that may run sshd on a high port and log in as itself (the target
# login is root).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
if [[ -z "${TANDEM_BIN:-}" ]]; then
	"$GO" build -o bin/tandem ./cmd/tandem
	TANDEM_BIN=bin/tandem
fi
"$GO" build -o bin/tandem-bench ./bench/cmd/tandem-bench
exec bin/tandem-bench -tandem "$TANDEM_BIN" -go "$GO" "$@"
