#!/usr/bin/env bash
# Runs the node's tests on a real cgroup v2 kernel: Debian's own
# linux-image-amd64, booted under qemu with cgroup v1 switched off
# (cgroup_no_v1=all), from an initramfs holding the test binaries, the
# commands, the test image and the guest's /init (guest/). See README.md.
#
#   testdata/cgroup2vm/run.sh [OUTDIR]      (default: <module>/build/cgroup2vm)
#
# or `make test-v2`.
#
# Needs root only for apt-get (qemu-system-x86, cpio) when they are missing,
# `make build testimage` done (KOLEJKA_BIN, KOLEJKA_TESTIMAGE), and Go.
# Writes OUTDIR/console.log (everything the tests printed),
# OUTDIR/report.jsonl (one line per suite and mode) and the summary
# $KOLEJKA_V2_SUMMARY (default docs/cgroup-v2.md). Exits non-zero if a
# suite failed, left something behind, or did not run.
#
# Environment: KOLEJKA_GOTAGS (default seccomp,urfave_cli_no_docs, the
# Makefile's GOTAGS) are the build tags; KOLEJKA_V2_TIMEOUT (seconds, default 2400) bounds the whole
# machine; KOLEJKA_V2_MEMORY (MiB, default 6144) and KOLEJKA_V2_CPUS
# (default 2) size it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODULE=$(cd "$HERE/../.." && pwd)
OUT=${1:-$MODULE/build/cgroup2vm}
BIN=${KOLEJKA_BIN:-$MODULE/bin}
TESTIMAGE=${KOLEJKA_TESTIMAGE:-$MODULE/build/testimage}
SUMMARY=${KOLEJKA_V2_SUMMARY:-$MODULE/docs/cgroup-v2.md}
TIMEOUT=${KOLEJKA_V2_TIMEOUT:-2400}
MEMORY=${KOLEJKA_V2_MEMORY:-6144}
CPUS=${KOLEJKA_V2_CPUS:-2}
# The build tags of the Makefile's builds (seccomp for the runc runtime's
# filter); the Makefile passes its own.
TAGS=${KOLEJKA_GOTAGS:-seccomp,urfave_cli_no_docs}
export GOFLAGS=

die() { echo "cgroup2vm: $*" >&2; exit 1; }
log() { printf '\n=== cgroup2vm: %s\n' "$*"; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -x "$BIN/kolejka-worker" ] || die "no $BIN/kolejka-worker: run \`make build\` first"
[ -f "$TESTIMAGE/rootfs.tar" ] || die "no $TESTIMAGE/rootfs.tar: run \`make testimage\` first"

# 1. Tools, from apt where missing.
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "missing ${need[*]}: install them (apt-get install ${need[*]})"
	log "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

# 2. Debian's kernel, downloaded once into kernel/: the meta package names
# the versioned image package, whose vmlinuz and overlay module we take.
KDIR=$OUT/kernel
if ! ls "$KDIR"/boot/vmlinuz-* >/dev/null 2>&1; then
	log "downloading Debian's linux-image-amd64"
	rm -rf "$KDIR" "$OUT/deb"
	mkdir -p "$OUT/deb" "$KDIR"
	(cd "$OUT/deb" && apt-get download linux-image-amd64) || { apt-get update -qq && (cd "$OUT/deb" && apt-get download linux-image-amd64); }
	pkg=$(dpkg-deb -f "$OUT"/deb/linux-image-amd64_*.deb Depends | sed -n 's/^\(linux-image-[^ ,]*\).*/\1/p')
	[ -n "$pkg" ] || die "linux-image-amd64 names no versioned kernel package"
	(cd "$OUT/deb" && apt-get download "$pkg")
	dpkg-deb -x "$OUT"/deb/"$pkg"_*.deb "$KDIR"
	rm -rf "$OUT/deb"
fi
VMLINUZ=$(ls "$KDIR"/boot/vmlinuz-* | head -1)
OVERLAY=$(find "$KDIR/lib/modules" -name 'overlay.ko*' | head -1)
[ -n "$OVERLAY" ] || die "no overlay module in $KDIR"
case "$OVERLAY" in *.ko) ;; *) die "$OVERLAY is compressed; the guest loads plain .ko files" ;; esac

# 3. The test binaries, built here and run there as go test runs them: in
# their package's folder of a tree with go.mod and testdata/.
log "building the test binaries"
ROOT=$OUT/root
rm -rf "$ROOT"
mkdir -p "$ROOT/v2vm/tests" "$ROOT/src" "$ROOT/opt/kolejka"
cp -a "$TESTIMAGE/rootfs/." "$ROOT/"
mkdir -p "$ROOT/lib/modules"
cp "$OVERLAY" "$ROOT/lib/modules/overlay.ko"
CGO_ENABLED=0 go build -trimpath -o "$ROOT/init" ./testdata/cgroup2vm/guest

# name package (the suites of plan.json below name them)
PACKAGES="cgroup:./internal/cgroup observer:./internal/observer/daemon kolejka-observer:./cmd/kolejka-observer worker:./worker runc:./worker/runc host:./worker/host foreman:./internal/foreman"
for np in $PACKAGES; do
	name=${np%%:*}; pkg=${np#*:}
	(cd "$MODULE" && go test -c -tags "$TAGS" -o "$ROOT/v2vm/tests/$name.test" "$pkg")
	mkdir -p "$ROOT/src/${pkg#./}"
	[ -d "$MODULE/${pkg#./}/testdata" ] && cp -a "$MODULE/${pkg#./}/testdata" "$ROOT/src/${pkg#./}/"
done
# The same packages built as for a kernel before Linux 5.14 (no
# cgroup.kill, no memory.peak: internal/cgroup/oldkernel.go), to run the fallbacks.
mkdir -p "$ROOT/v2vm/tests/oldkernel"
for np in cgroup:./internal/cgroup runc:./worker/runc host:./worker/host observer:./internal/observer/daemon; do
	(cd "$MODULE" && go test -c -tags "$TAGS,cgroup_oldkernel" -o "$ROOT/v2vm/tests/oldkernel/${np%%:*}.test" "${np#*:}")
done
cp "$MODULE/go.mod" "$ROOT/src/"
mkdir -p "$ROOT/src/testdata"
cp -a "$MODULE/testdata/tasks" "$ROOT/src/testdata/"
cp -a "$BIN" "$ROOT/opt/kolejka/bin"
mkdir -p "$ROOT/opt/kolejka/testimage"
cp -a "$TESTIMAGE/rootfs.tar" "$TESTIMAGE/docker-save.tar" "$TESTIMAGE/oci" "$TESTIMAGE/rootfs" "$ROOT/opt/kolejka/testimage/"

# Shared libraries of every dynamically linked binary, at their paths.
for f in "$ROOT"/v2vm/tests/* "$ROOT"/opt/kolejka/bin/*; do
	ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true
done | sort -u | while read -r lib; do
	mkdir -p "$ROOT$(dirname "$lib")"
	cp -L "$lib" "$ROOT$lib"
done

cp "$HERE/plan.json" "$ROOT/v2vm/plan.json"

log "packing the initramfs"
(cd "$ROOT" && find . | cpio -o -H newc --quiet) > "$OUT/initrd.cpio"
ls -la "$OUT/initrd.cpio"

# 4. Boot. The console (ttyS0) gets what the tests print; the second serial
# port (ttyS1) the guest's report.
log "booting $(basename "$VMLINUZ") with cgroup v1 off (${MEMORY} MiB, ${CPUS} CPUs, at most ${TIMEOUT} s)"
rm -f "$OUT/console.log" "$OUT/report.jsonl"
start=$(date +%s)
status=0
timeout --foreground -k 10 "$TIMEOUT" qemu-system-x86_64 -m "$MEMORY" -smp "$CPUS" -display none -monitor none \
	-no-reboot -kernel "$VMLINUZ" -initrd "$OUT/initrd.cpio" \
	-append "console=ttyS0 cgroup_no_v1=all panic=-1 quiet" \
	-serial "file:$OUT/console.log" -serial "file:$OUT/report.jsonl" || status=$?
log "the machine ran $(( $(date +%s) - start )) s (exit $status)"
[ $status = 124 ] && echo "cgroup2vm: the machine was stopped after $TIMEOUT s" >&2

# 5. The summary: failed, skipped-for-want and leftovers fail the run.
(cd "$MODULE" && go run ./testdata/cgroup2vm/summary -report "$OUT/report.jsonl" -out "$SUMMARY" -console "$OUT/console.log")
