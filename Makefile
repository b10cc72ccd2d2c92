# kolejka in Go. Root is needed for everything that makes containers or cgroups.

GO        ?= go
BIN       ?= $(CURDIR)/bin
TESTIMAGE ?= $(CURDIR)/build/testimage
IMAGES    ?= /var/lib/kolejka/images
GOTEST    ?= $(GO) test -count=1 -timeout 30m
BENCHTIME ?= 20x

# libcontainer's seccomp support (cgo, libseccomp) gives task containers
# their system-call filter (worker/runc/seccomp.go): every go command of
# this Makefile, and the go builds tests make, build with it.
# urfave_cli_no_docs leaves out urfave/cli's man-page and markdown writers
# (blackfriday, md2man), which we never call but whose package
# initialisation every start paid: ~10 ms per task, as runc init re-executes
# the binary (BenchmarkProcessStart, BENCHMARKS.md).
GOTAGS ?= seccomp,urfave_cli_no_docs
export GOFLAGS := $(strip $(GOFLAGS) -tags=$(GOTAGS))

# kolejka-init runs inside task containers whatever their image, and so may
# kolejka-observer (a judge's tool for sessions of its own): static, no cgo.
# kolejka-client is static without cgo too. kolejka-runc-init, every
# container's first process, kolejka-worker and kolejka-foreman are static
# with cgo (libseccomp and libc linked in; Go's own user and DNS lookups,
# as static glibc cannot load NSS modules): a command run once per task,
# and the re-execution of the worker or foreman binary that starts each
# container, skip the dynamic loader's work (BENCHMARKS.md, issue 22).
# kolejka-server keeps SQLite's cgo dynamically linked: it starts once.
STATIC_LDFLAGS = -s -w -extldflags=-static
STATIC_TAGS    = $(GOTAGS),osusergo,netgo

.PHONY: all deps test-deps build install packages testimage demo test test-v2 hardening bench lint fmt fuzz clean

all: build

# What the build needs beyond Go and gcc: libseccomp's headers, from apt
# where they are missing (as root on Debian or Ubuntu), else a clear stop.
deps:
	@echo '#include <seccomp.h>' | $${CC:-gcc} -E -x c - >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing libseccomp-dev"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libseccomp-dev; \
		else \
			echo "libseccomp's headers (seccomp.h) are missing: install libseccomp-dev (Debian, Ubuntu) or libseccomp-devel"; exit 1; \
		fi; }

build: deps
	mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='$(STATIC_LDFLAGS)' -o $(BIN)/ ./cmd/kolejka-init ./cmd/kolejka-observer ./cmd/kolejka-client
	$(GO) build -trimpath -tags=$(STATIC_TAGS) -ldflags='$(STATIC_LDFLAGS)' -o $(BIN)/ ./cmd/kolejka-runc-init ./cmd/kolejka-worker ./cmd/kolejka-foreman
	$(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/ ./cmd/kolejka-server

# Install the binaries, the systemd units (their paths rewritten to
# PREFIX's), the docs the units name and a commented kolejka.conf: under
# PREFIX, into DESTDIR when set (a staging root, as packages are made).
# Units go where systemd looks for the PREFIX (/usr/local/lib/systemd/system
# for /usr/local, /usr/lib/systemd/system for /usr); the example goes where
# Debian keeps examples (share/doc/kolejka/examples/). Enabling the units
# and writing /etc/kolejka/kolejka.conf stay the administrator's (or a
# package's) to do.
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR  ?= $(PREFIX)/share/doc/kolejka
COMMANDS = kolejka-server kolejka-client kolejka-foreman kolejka-worker kolejka-runc-init kolejka-init kolejka-observer

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)/examples
	install -m 0755 $(addprefix $(BIN)/,$(COMMANDS)) $(DESTDIR)$(BINDIR)/
	for u in dist/systemd/*.service; do \
		sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/share/doc/kolejka/|$(DOCDIR)/|g' $$u >$(DESTDIR)$(UNITDIR)/$${u##*/} && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$${u##*/} || exit 1; \
	done
	install -m 0644 docs/grid-node.md docs/observer.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 internal/server/README.md $(DESTDIR)$(DOCDIR)/server.md
	install -m 0644 dist/kolejka.conf $(DESTDIR)$(DOCDIR)/examples/kolejka.conf

# Pinned tools (the linters, the packager) live in build/tools, each under
# a name that carries its version (see the linters below). Defined before
# any rule names them: make reads a rule's prerequisites as it meets them.
TOOLS = $(CURDIR)/build/tools
# The packager of `make packages`, nfpm, installed as the linters are.
NFPM_VERSION = v2.48.0
NFPM         = $(TOOLS)/nfpm-$(NFPM_VERSION)

# Debian packages in build/packages: kolejka-server, kolejka-node
# (foreman, worker, init, observer) and kolejka-client, made by nfpm
# (dist/nfpm/) from `make install PREFIX=/usr` into a staging root.
# VERSION: `git describe` of the last v* tag (v1.2.0-3-gabc → 1.2.0+3.gabc),
# else 0.0.0~git<date>.<commit>.
VERSION ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null | sed 's/^v//; s/-/+/; s/-/./g' | grep . || \
	git log -1 --format='0.0.0~git%cd.%h' --date=format:%Y%m%d 2>/dev/null || echo 0.0.0)
ARCH    ?= $(shell $(GO) env GOARCH)
PACKAGES = $(CURDIR)/build/packages
STAGE    = $(CURDIR)/build/stage
packages: $(NFPM)
	rm -rf $(PACKAGES) $(STAGE)
	$(MAKE) install PREFIX=/usr DESTDIR=$(STAGE)
	mkdir -p $(PACKAGES)
	for p in kolejka-server kolejka-node kolejka-client; do \
		VERSION='$(VERSION)' ARCH='$(ARCH)' \
			$(NFPM) package --packager deb --config dist/nfpm/$$p.yaml --target $(PACKAGES)/ || exit 1; \
	done

# The test image: Debian's busybox-static and the tiny static C programs of src/,
# as a rootfs tar, a `docker save` tar and an OCI layout.
testimage: $(TESTIMAGE)/rootfs.tar

$(TESTIMAGE)/rootfs.tar: testdata/image/build.sh $(wildcard testdata/image/src/*) $(wildcard testdata/image/mkarchive/*.go)
	testdata/image/build.sh $(TESTIMAGE)

# Build everything and make the test image; start the one-machine grid
# (`kolejka-server dev`), run testdata/tasks/hello on it through
# `kolejka-client execute`, show the result and stop the grid, which
# removes all it made (testdata/demo.sh).
demo: build testimage
	testdata/demo.sh $(BIN) $(TESTIMAGE)

# Every test but the hardening suite's (`make hardening` runs it: kept out
# of here so that CI does not run it twice). Tests needing root, cgroups or
# Docker skip without them, and fail instead when KOLEJKA_REQUIRE_PRIVILEGED=1
# (as CI sets it).
# What the tests need beyond the build (skopeo, runc, iproute2, debootstrap,
# a Docker engine): installed as root through apt, else named and left
# (their tests skip). The packages' test (tests/packages) installs the
# packages built here (KOLEJKA_PACKAGES) into a clean Debian root.
test-deps:
	testdata/host-deps.sh

test: test-deps build testimage packages lint
	KOLEJKA_TESTIMAGE=$(TESTIMAGE) KOLEJKA_BIN=$(BIN) KOLEJKA_PACKAGES=$(PACKAGES) $(GOTEST) $$($(GO) list ./... | grep -v '/hardening$$')
	# The server's whole suite again with every test's server on PostgreSQL
	# (the store's suite runs on both backends above already).
	KOLEJKA_TEST_DATABASE=postgres KOLEJKA_TESTIMAGE=$(TESTIMAGE) KOLEJKA_BIN=$(BIN) $(GOTEST) ./internal/server/

# The node's tests (cgroup, observer, the runc and host runtimes, a
# foreman against a server) on a real cgroup v2 kernel: Debian's
# linux-image-amd64 booted under qemu with cgroup v1 off, as root of the
# hierarchy and as a delegated service, and built as for a kernel without
# cgroup.kill and memory.peak (testdata/cgroup2vm/README.md). Rewrites
# docs/cgroup-v2.md. Installs qemu-system-x86 and cpio through apt where
# missing (as root).
V2_SUMMARY ?= $(CURDIR)/docs/cgroup-v2.md
test-v2: build testimage
	KOLEJKA_GOTAGS=$(GOTAGS) KOLEJKA_BIN=$(BIN) KOLEJKA_TESTIMAGE=$(TESTIMAGE) KOLEJKA_V2_SUMMARY=$(V2_SUMMARY) testdata/cgroup2vm/run.sh

# The hardening suite (tests/hardening/): tables of bad input, hostile tasks and
# faults, every row an assertion; the run rewrites docs/hardening.md with
# what it observed (also when a case fails). As root, with Docker.
HARDENING_TABLE ?= $(CURDIR)/docs/hardening.md
hardening: test-deps build testimage
	KOLEJKA_TESTIMAGE=$(TESTIMAGE) KOLEJKA_BIN=$(BIN) KOLEJKA_HARDENING_TABLE=$(HARDENING_TABLE) $(GOTEST) -v ./tests/hardening/

bench: build testimage
	KOLEJKA_TESTIMAGE=$(TESTIMAGE) KOLEJKA_BIN=$(BIN) $(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 60m ./...

# A short run of every fuzz target of the tree, found per package; longer
# with FUZZTIME=5m. CI budgets by executions (FUZZTIME=NNNx), not wall
# clock: Go 1.26's fuzz coordinator can fail a target with a bare "context
# deadline exceeded" when a -fuzztime duration ends while a worker is busy
# with a slow input (go.dev/issue/75804, fixed in Go 1.27); a count budget
# sets no deadline, so only a real finding fails the run. The targets in
# FUZZ_SLOW cost ~20 ms an input (they verify argon2id passwords) and get
# FUZZTIME_SLOW instead, so that a count budget fits both kinds.
FUZZTIME ?= 10s
FUZZTIME_SLOW ?= $(FUZZTIME)
FUZZ_SLOW = FuzzLoginBody
fuzz:
	@set -e; for pd in $$($(GO) list -f '{{.ImportPath}}={{.Dir}}' ./...); do \
		pkg=$${pd%%=*}; dir=$${pd#*=}; \
		grep -qs '^func Fuzz' "$$dir"/*_test.go || continue; \
		for f in $$($(GO) test -list '^Fuzz' "$$pkg" | grep '^Fuzz'); do \
			budget=$(FUZZTIME); \
			case " $(FUZZ_SLOW) " in *" $$f "*) budget=$(FUZZTIME_SLOW);; esac; \
			echo "fuzz $$pkg $$f for $$budget"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $$budget "$$pkg"; \
		done; \
	done

# Linters beyond go vet, pinned so that every machine (CI's clean clone
# too) judges the tree alike: staticcheck whole, and the golangci-lint
# checks of .golangci.yml (defects that lose data or leak resources). Each
# is installed from the Go module proxy into build/tools under a name that
# carries its version: installed once, and again only when the pin
# changes. Built with GOFLAGS empty: our build tags are the tree's, not
# the tools'.
STATICCHECK_VERSION   = v0.8.2
GOLANGCI_LINT_VERSION = v2.15.0
STATICCHECK   = $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)
GOLANGCI_LINT = $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)

$(STATICCHECK):
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS)/staticcheck $@

$(GOLANGCI_LINT):
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOFLAGS= $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(TOOLS)/golangci-lint $@

$(NFPM):
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOFLAGS= $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
	mv $(TOOLS)/nfpm $@

lint: $(STATICCHECK) $(GOLANGCI_LINT)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOFLAGS= $(GO) vet ./worker/runc/   # the build without the seccomp tag too
	$(STATICCHECK) ./...
	$(GOLANGCI_LINT) run ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN) build
