#!/usr/bin/env bash
# Prints a software bill of materials of a Go binary as CycloneDX 1.5 JSON:
# the Go modules the binary was linked from, as the toolchain recorded
# them (go version -m), each with its version and package URL, and the
# module sums (h1:, the go.sum hash) as properties. The time in its
# metadata is SOURCE_DATE_EPOCH when set, so the same binary gives the
# same file.
#
#   scripts/sbom.sh bin/tandem 1.2.0 > dist/tandem.cdx.json
set -euo pipefail
bin=${1:?usage: scripts/sbom.sh BINARY [VERSION]}
# VERSION, when given, is Tandem's own version (make build records it with
# -ldflags, which go version -m does not show).
version=${2:-}
go_tool=${GO:-go}
info=$("$go_tool" version -m "$bin")
ts=""
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	ts=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
fi
# Module paths and versions hold no quote or backslash (Go forbids them),
# so they go into the JSON as they are.
awk -v ts="$ts" -v version="$version" -F'\t' '
function comp(kind, path, ver, sum,    s) {
	s = sprintf("{\"type\":\"%s\",\"bom-ref\":\"pkg:golang/%s@%s\",\"name\":\"%s\",\"version\":\"%s\",\"purl\":\"pkg:golang/%s@%s\"", kind, path, ver, path, ver, path, ver)
	if (sum != "") s = s sprintf(",\"properties\":[{\"name\":\"go:module:sum\",\"value\":\"%s\"}]", sum)
	return s "}"
}
NR == 1 { split($0, a, ": "); gover = a[2]; next }
$2 == "mod" { if (version != "") $4 = version; main = comp("application", $3, $4, $5); mainref = "pkg:golang/" $3 "@" $4; next }
$2 == "dep" { n++; path[n] = $3; ver[n] = $4; sum[n] = $5; next }
$2 == "=>" { path[n] = $3; ver[n] = $4; sum[n] = $5; next }
$2 == "build" { split($3, kv, "="); if (kv[1] == "vcs.revision") rev = kv[2]; next }
END {
	printf "{\"bomFormat\":\"CycloneDX\",\"specVersion\":\"1.5\",\"version\":1,\"metadata\":{"
	if (ts != "") printf "\"timestamp\":\"%s\",", ts
	printf "\"tools\":{\"components\":[{\"type\":\"application\",\"name\":\"go version -m\",\"version\":\"%s\"}]},", gover
	printf "\"component\":%s", main
	if (rev != "") printf ",\"properties\":[{\"name\":\"vcs.revision\",\"value\":\"%s\"}]", rev
	printf "},\"components\":["
	for (i = 1; i <= n; i++) printf "%s%s", (i > 1 ? "," : ""), comp("library", path[i], ver[i], sum[i])
	printf "],\"dependencies\":[{\"ref\":\"%s\",\"dependsOn\":[", mainref
	for (i = 1; i <= n; i++) printf "%s\"pkg:golang/%s@%s\"", (i > 1 ? "," : ""), path[i], ver[i]
	printf "]}]}\n"
}' <<<"$info"
