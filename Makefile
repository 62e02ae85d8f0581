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

.PHONY: all test deps vet staticcheck build demo fuzz-smoke bench bench-smoke reproducible deb sbom

# Release builds (docs/DEPLOY.md): -trimpath keeps build paths out of the
# binary, CGO_ENABLED=0 makes it static, and -buildvcs=false with the
# version and commit given by -ldflags makes it depend on the commit
# alone, whatever the environment's GOFLAGS say. make reproducible checks
# that two builds are bit-identical.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell c=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD -- 2>/dev/null && echo $$c || echo $$c-dirty; } || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
RELEASE_FLAGS = -trimpath -buildvcs=false -ldflags "-X tandem.dev/tandem/internal/cli.buildVersion=$(VERSION) -X tandem.dev/tandem/internal/cli.buildCommit=$(COMMIT)"

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
	$(MAKE) reproducible

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
	CGO_ENABLED=0 $(GO) build $(RELEASE_FLAGS) -o bin/tandem ./cmd/tandem

# Two builds of one commit are bit-identical: bin/tandem against a second
# build, to another path, that compiles every package anew (-a).
reproducible: build
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	CGO_ENABLED=0 $(GO) build -a $(RELEASE_FLAGS) -o "$$tmp/tandem" ./cmd/tandem; \
	if cmp bin/tandem "$$tmp/tandem"; then \
		echo "reproducible: two builds of $(COMMIT) are identical (sha256 $$(sha256sum < bin/tandem | cut -c1-16)…)"; \
	else echo "reproducible: two builds of $(COMMIT) differ" >&2; exit 1; fi

# The Debian package (binary, unit, default configuration, docs, man
# pages, SBOM) in dist/.
deb: build
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) scripts/build-deb.sh bin/tandem $(VERSION) dist

# The SBOM of the release binary: its Go modules as CycloneDX JSON.
sbom: build
	mkdir -p dist
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) scripts/sbom.sh bin/tandem $(VERSION) > dist/tandem.cdx.json

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
