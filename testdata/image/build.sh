#!/bin/bash
# Builds the test image kolejka-test:latest from Debian's busybox-static and
# the tiny static C programs of src/; see README.md next to this script.
#
#   testdata/image/build.sh [OUTDIR]      (default: <module>/build/testimage)
#
# Outputs under OUTDIR: rootfs/, rootfs.tar, docker-save.tar, oci/ (and
# cache/ with the downloaded .deb, work/ scratch). Idempotent: a second run
# reuses the cached .deb and rewrites the same bytes.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODULE=$(cd "$HERE/../.." && pwd)
OUT=${1:-$MODULE/build/testimage}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

die() { echo "build.sh: $*" >&2; exit 1; }
for tool in apt-get dpkg-deb gcc readelf go; do
	command -v "$tool" >/dev/null || die "$tool is required (apt-get install ${tool/readelf/binutils})"
done

# 1. Debian's busybox-static package, downloaded once into cache/.
CACHE=$OUT/cache
mkdir -p "$CACHE"
shopt -s nullglob
debs=("$CACHE"/busybox-static_*.deb)
if [ ${#debs[@]} -eq 0 ]; then
	# apt-get download writes into the current folder; as root it warns that
	# _apt cannot write there (harmless: it downloads unsandboxed).
	if ! (cd "$CACHE" && apt-get download busybox-static); then
		echo "build.sh: apt-get download failed; running apt-get update and retrying" >&2
		apt-get update
		(cd "$CACHE" && apt-get download busybox-static)
	fi
	debs=("$CACHE"/busybox-static_*.deb)
fi
[ ${#debs[@]} -eq 1 ] || die "expected one busybox-static .deb in $CACHE, found ${#debs[@]}: remove the stale ones"
DEB=${debs[0]}

WORK=$OUT/work
rm -rf "$WORK"
mkdir -p "$WORK/deb"
dpkg-deb -x "$DEB" "$WORK/deb"
BUSYBOX=$WORK/deb/bin/busybox
[ -x "$BUSYBOX" ] || die "$DEB has no executable bin/busybox"
if readelf -l "$BUSYBOX" | grep -q 'program interpreter'; then
	die "$BUSYBOX is dynamically linked; the test image needs a static busybox"
fi

# 2. The rootfs, built in work/ and swapped into place at the end.
umask 022
R=$WORK/rootfs
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,proc,sys,dev,tmp,root,var/lib/kolejka}
install -m 0755 "$BUSYBOX" "$R/bin/busybox"
# One absolute symlink per applet (bin/sh among them), like Debian's busybox
# images; the list is the binary's own, so it always matches the package.
while IFS= read -r applet; do
	case "$applet" in
	bin/busybox) continue ;;
	/* | *..* | '') die "unexpected applet path '$applet' from busybox --list-full" ;;
	esac
	mkdir -p "$R/$(dirname "$applet")"
	ln -sfn /bin/busybox "$R/$applet"
done < <("$BUSYBOX" --list-full | LC_ALL=C sort)
[ -L "$R/bin/sh" ] || die "busybox --list-full did not list bin/sh"

printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
printf 'kolejka\n' >"$R/etc/hostname"

for src in "$HERE"/src/*.c; do
	prog=$(basename "$src" .c)
	gcc -static -O2 -Wall -Wextra -Werror -pthread -o "$R/usr/local/bin/$prog" "$src" -lm
done

# Explicit modes, so neither the umask nor the package decide them.
find "$R" -type d -exec chmod 0755 {} +
find "$R" -type f -exec chmod 0644 {} +
chmod 0755 "$R/bin/busybox" "$R"/usr/local/bin/kolejka-*
chmod 1777 "$R/tmp"
chmod 0700 "$R/root"
chown -R 0:0 "$R" 2>/dev/null || true # the archives record root anyway

rm -rf "$OUT/rootfs"
mv "$R" "$OUT/rootfs"

# 3. The archives: rootfs.tar, docker-save.tar, oci/ (deterministic).
(cd "$MODULE" && go run ./testdata/image/mkarchive -rootfs "$OUT/rootfs" -out "$OUT" -name kolejka-test:latest)
rm -rf "$WORK"

echo "build.sh: built kolejka-test:latest from $(basename "$DEB") in $OUT"
(cd "$OUT" && sha256sum rootfs.tar docker-save.tar)
