#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (the S3 server the blob store's S3 tests run
# against) from the Go module proxy at a pinned version into
# /usr/local/bin/weed, and does nothing when that binary is already this
# version (`go version -m` names the module it was built from). `go install
# …/weed@v` is refused because seaweedfs's go.mod has a replace directive, so
# a throw-away module requires it and repeats that replace. About 10 minutes
# on 2 cores; host-deps.sh calls it. WEED_BIN overrides the destination.
set -euo pipefail

version=v0.0.0-20261109003541-7506e5f91cd6
dest=${WEED_BIN:-/usr/local/bin/weed}

if [ -x "$dest" ] && go version -m "$dest" 2>/dev/null | grep -q "github.com/seaweedfs/seaweedfs[[:space:]]*$version"; then
	exit 0
fi
command -v go >/dev/null || { echo "seaweedfs.sh: no go toolchain: the S3 blob tests skip" >&2; exit 0; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
printf '\n=== building weed (SeaweedFS %s), about 10 minutes\n' "$version"
export GOFLAGS=-mod=mod
go mod init kolejka.invalid/weedbuild >/dev/null 2>&1
go mod edit -replace github.com/tyler-smith/go-bip39=github.com/cosmos/go-bip39@v1.0.0
go get "github.com/seaweedfs/seaweedfs/weed@$version"
go build -trimpath -o "$tmp/weed" github.com/seaweedfs/seaweedfs/weed
install -D -m 0755 "$tmp/weed" "$dest"
