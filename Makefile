# hallmark: two entry points.
#   make test   install what is needed, then gofmt, go vet and every test
#   make demo   build the farm, start it, build examples/go_service through it
# Also: make deps (system packages + Go modules), make bin, make bench.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go

# Debian packages the tests and the demo need.
APT_PACKAGES := bazel-bootstrap bazel-skylib bazel-platforms bazel-rules-java \
	bazel-rules-proto golang-1.19-go bubblewrap runsc docker-registry git

.PHONY: all test demo deps apt gomod bin bench fmt-check vet clean runsc

all: test

deps: apt gomod

apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; exit 0; fi; \
	echo "deps: installing$$missing"; \
	sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	$$sudo apt-get update -q || { echo "make: apt-get update failed" >&2; exit 1; }; \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing \
	  || { echo "make: apt-get install$$missing failed" >&2; exit 1; }

gomod:
	@command -v $(GO) >/dev/null || { echo "make: no Go toolchain on PATH (hallmark needs the version in go.mod)" >&2; exit 1; }
	$(GO) mod download
	$(GO) mod download github.com/bazelbuild/rules_go@v0.34.0

fmt-check:
	@files=$$(git ls-files -co --exclude-standard '*.go'); \
	bad=$$(gofmt -l $$files); \
	if [ -n "$$bad" ]; then echo "make: these files are not gofmt-clean:" >&2; echo "$$bad" >&2; exit 1; fi; \
	echo "gofmt: clean"

vet:
	$(GO) vet ./...

# HALLMARK_REQUIRE_BAZEL=1 turns "bazel is absent" skips into failures.
# The gVisor tier's tests use the runsc `make runsc` builds.
test: deps runsc fmt-check vet
	scripts/bazel-env.sh
	HALLMARK_REQUIRE_BAZEL=1 HALLMARK_RUNSC=$(CURDIR)/.cache/runsc/runsc $(GO) test -count=1 -timeout=30m ./...

bin:
	mkdir -p bin
	$(GO) build -o bin/ ./cmd/...

demo: deps bin
	scripts/demo.sh

bench: deps bin
	bench/run.sh

# A current runsc for the gVisor tier (Debian 12's fails statx with
# AT_NO_AUTOMOUNT, so `ls` and `stat` break). Static (CGO_ENABLED=0): runsc
# re-executes itself after pivoting into an empty root, where a dynamically
# linked binary finds no ELF interpreter ("fork/exec /proc/self/exe: no such
# file or directory"). Tests and bench find it at .cache/runsc/runsc.
RUNSC_VERSION ?= v0.0.0-20260905035102-160fafc42237
runsc: .cache/runsc/runsc
.cache/runsc/runsc:
	mkdir -p .cache/runsc
	CGO_ENABLED=0 GOBIN=$(CURDIR)/.cache/runsc $(GO) install -trimpath -ldflags='-s -w' gvisor.dev/gvisor/runsc@$(RUNSC_VERSION)

clean:
	rm -rf bin .hallmark/demo bench/out
