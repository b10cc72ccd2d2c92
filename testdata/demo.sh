#!/usr/bin/env bash
# `make demo`: starts the one-machine grid (`kolejka-server dev`: a server,
# a runc node, the test image, a user) in the background, runs
# testdata/tasks/hello through `kolejka-client execute` against it, prints
# the result, and stops the grid, also when a step fails or on Ctrl-C.
#
#	testdata/demo.sh BIN TESTIMAGE
set -euo pipefail
bin=$1 testimage=$2

out=$(mktemp -d /tmp/kolejka-demo.XXXXXX)
grid=
stop() {
	local status=$?
	if [ -n "$grid" ] && kill -0 "$grid" 2>/dev/null; then
		echo "=== stopping the grid (Ctrl-C does the same)"
		kill -INT "$grid"
		if ! wait "$grid"; then
			echo "the grid did not stop cleanly; its log:" >&2
			cat "$out/grid.log" >&2
			status=1
		fi
		tail -n 1 "$out/grid.log"
	fi
	rm -rf "$out"
	exit "$status"
}
trap stop EXIT
trap 'exit 130' INT TERM

echo "=== kolejka-server dev (log: $out/grid.log)"
"$bin/kolejka-server" dev --testimage "$testimage" >"$out/grid" 2>"$out/grid.log" &
grid=$!
for _ in $(seq 600); do
	grep -q '^client:' "$out/grid" && break
	if ! kill -0 "$grid" 2>/dev/null; then
		cat "$out/grid.log" >&2
		echo "the grid did not start" >&2
		exit 1
	fi
	sleep 0.1
done
cat "$out/grid"
grep -q '^client:' "$out/grid" || { echo "the grid did not start in a minute" >&2; exit 1; }
eval "$(sed -n 's/^client: *//p' "$out/grid")"

echo "=== kolejka-client execute testdata/tasks/hello"
"$bin/kolejka-client" execute testdata/tasks/hello "$out/result"
cat "$out/result/kolejka_result.json"
echo
cat "$out/result/stdout"
