# Tandem's build and test entry points. `make test` is the one full run
# (what CI runs via .ci/run): test programs, vet, staticcheck, unit tests
# with -race, the end-to-end tests, a smoke run of the benchmarks.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

GO ?= go

# CI=true turns missing test programs into failures instead of skips.
export CI

# staticcheck at a pinned version (docs/DEPENDENCIES.md says why this one).
# `go run pkg@version` builds it from the module proxy into the build cache,
# outside go.mod: a tool of the checks, not a dependency of Tandem.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

.PHONY: all test deps vet staticcheck build demo fuzz-smoke bench bench-smoke

all: build

deps:
	scripts/test-deps.sh

# Unit tests run with the race detector; the end-to-end tests drive the
# built binary and real programs, so a race build would only slow them.
test: deps
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(GO) test -race -count=1 -timeout 15m $$($(GO) list ./... | grep -v '/e2e$$')
	$(GO) test -count=1 -timeout 20m ./e2e/
	$(MAKE) bench-smoke

# A smoke run of the benchmark suite (bench/, ~15 s): tiny sizes, every
# section, so the scripts keep working. It asserts no figure; it fails only
# when a section cannot run.
bench-smoke:
	timeout 300 bench/run.sh -quick > /dev/null

vet:
	$(GO) vet ./...

staticcheck:
	$(STATICCHECK) ./...

build:
	$(GO) build -o bin/tandem ./cmd/tandem

# The demo, built first with the compiler's progress shown (go build -v
# names each package as it compiles; the first build takes a minute or two).
demo:
	@echo "building bin/tandem (the first build downloads and compiles the dependencies: 1-2 minutes)"
	$(GO) build -v -o bin/tandem ./cmd/tandem
	bin/tandem demo

# Runs every Fuzz target for 5s. `go test -list` prints a package's fuzz
# targets and then an "ok <pkg>" line, so names are collected until that
# line names their package.
fuzz-smoke:
	targets=$$($(GO) test -list '^Fuzz' ./... | awk '/^Fuzz/ { names = names " " $$1; next } /^ok/ { if (names != "") print $$2 names } { names = "" }'); \
	while read -r pkg names; do \
		[ -n "$$pkg" ] || continue; \
		for name in $$names; do \
			echo "fuzz $$pkg $$name"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime 5s "$$pkg"; \
		done; \
	done <<< "$$targets"

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...
