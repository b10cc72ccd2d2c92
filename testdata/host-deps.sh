#!/usr/bin/env bash
# Installs what the tests need on this machine and a fresh Debian or Ubuntu
# lacks: the tools (gcc, make, git, ip, dpkg-deb, skopeo, runc, python3,
# docker-registry for the registry pulls' test, squashfs-tools for the SIF
# images, debootstrap for the packages' test, postgresql, whose initdb
# and pg_ctl the store's PostgreSQL tests run a cluster with, and SeaweedFS's
# weed for the S3 blob store's, via seaweedfs.sh), libc's
# static archive, and a Docker engine, started if none answers (libseccomp's
# headers come with `make deps`, which every build runs). It
# needs root and apt-get; without them it says what is missing and leaves
# it: the tests that need it then skip and name it (and fail under
# KOLEJKA_REQUIRE_PRIVILEGED=1, as CI runs them). `make test` and CI run it.
set -euo pipefail

log() { printf '\n=== %s\n' "$*"; }

need_pkgs=()
for cmd_pkg in gcc:gcc make:make git:git ip:iproute2 dpkg-deb:dpkg skopeo:skopeo runc:runc python3:python3 docker-registry:docker-registry debootstrap:debootstrap chromium:chromium mksquashfs:squashfs-tools; do
	command -v "${cmd_pkg%%:*}" >/dev/null || need_pkgs+=("${cmd_pkg##*:}")
done
# PostgreSQL's server binaries are off PATH, in /usr/lib/postgresql/VERSION/bin.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_pkgs+=(postgresql)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/aarch64-linux-gnu/libc.a ] || need_pkgs+=(libc6-dev)
if ! docker info >/dev/null 2>&1; then
	command -v dockerd >/dev/null || need_pkgs+=(docker.io)
fi

can_install=true
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
	can_install=false
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
	if ! $can_install; then
		echo "host-deps.sh: missing ${need_pkgs[*]}; run as root on Debian or Ubuntu to install them (the tests that need them skip)" >&2
		exit 0
	fi
	log "installing ${need_pkgs[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
fi

# SeaweedFS's weed, the S3 server of the blob store's tests: built once
# from the Go module proxy at a pinned version (about 10 minutes), then
# found in /usr/local/bin.
if $can_install; then
	"$(dirname "$0")/seaweedfs.sh"
elif ! command -v weed >/dev/null; then
	echo "host-deps.sh: no weed; run testdata/seaweedfs.sh as root (the S3 blob tests skip)" >&2
fi

if ! docker info >/dev/null 2>&1; then
	if ! $can_install; then
		echo "host-deps.sh: no Docker engine answers and this is not root: the Docker tests skip" >&2
		exit 0
	fi
	log "starting dockerd"
	(dockerd >/var/log/kolejka-dockerd.log 2>&1 &)
	for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
	docker info >/dev/null 2>&1 || { echo "dockerd did not start:"; tail -50 /var/log/kolejka-dockerd.log; exit 1; }
fi
