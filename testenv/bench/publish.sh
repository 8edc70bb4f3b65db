#!/usr/bin/env bash
# Publish benchmark: publishes a bundle of SIZE (default 1G) incompressible
# bytes to a real `updateserver serve` on loopback and compares the wall
# clock with `cp` of the same .tar.gz on the same filesystem; reports the
# server's peak RSS (VmHWM) during the run.
#
#   bash testenv/bench/publish.sh              # 1 GiB
#   SIZE=256M bash testenv/bench/publish.sh    # quicker
#
# Environment: SIZE (head -c size, default 1G), PORT (default 0: any free
# port, read from the server's log), CACHE (cold: drop the page cache
# before each timed step, needs root and a writable
# /proc/sys/vm/drop_caches; warm: read the source once before each step;
# default cold when permitted, else warm), TMPDIR (where the bundle, the
# cp copy and the server's data dir go: one filesystem for all).
#
# Both timed steps end with their data on disk: cp is followed by
# `sync FILE` (fsync) inside the timed region, as the server fsyncs the
# staged upload before answering. Everything else is flushed with `sync`
# before each timed step so that neither pays for the other's writeback.
# MB is 10^6 bytes, as in `go test -bench`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SIZE=${SIZE:-1G}
PORT=${PORT:-0}
BIN=$ROOT/bin/updateserver

TMP=$(mktemp -d "${TMPDIR:-/tmp}/publish-bench.XXXXXX")
SERVER_PID=
cleanup() {
	if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }
now() { date +%s.%N; }

# Cache mode.
can_drop=0
if [[ -w /proc/sys/vm/drop_caches ]] && (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
	can_drop=1
fi
CACHE=${CACHE:-$([[ $can_drop == 1 ]] && echo cold || echo warm)}
if [[ $CACHE == cold && $can_drop == 0 ]]; then
	log "CACHE=cold needs a writable /proc/sys/vm/drop_caches (root); using warm"
	CACHE=warm
fi

# prepare SRC: flush all dirty pages, then either drop the page cache or
# make sure SRC is in it, so both timed steps start from the same state.
prepare() {
	sync
	if [[ $CACHE == cold ]]; then
		echo 3 >/proc/sys/vm/drop_caches
	else
		cat "$1" >/dev/null
	fi
}

log "== build"
make -C "$ROOT" --no-print-directory build >&2

log "== bundle: $SIZE of /dev/urandom, tar | gzip -1"
mkdir -p "$TMP/bundle/files"
printf 'product = "bench"\nversion = "1.0.0"\n' >"$TMP/bundle/bundle.toml"
head -c "$SIZE" /dev/urandom >"$TMP/bundle/files/payload.bin"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
	-C "$TMP/bundle" -cf - bundle.toml files | gzip -1 >"$TMP/bundle.tar.gz"
rm -rf "$TMP/bundle"
SRC=$TMP/bundle.tar.gz
BYTES=$(stat -c %s "$SRC")

log "== cp ($CACHE cache)"
prepare "$SRC"
t0=$(now)
cp --reflink=never "$SRC" "$TMP/copy.tar.gz"
sync "$TMP/copy.tar.gz"
t1=$(now)
CP_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
rm -f "$TMP/copy.tar.gz"

log "== server"
"$BIN" serve --data "$TMP/data" --listen "127.0.0.1:$PORT" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
URL=
for _ in $(seq 300); do
	URL=$(sed -n 's/.*msg="update server listening" addr=\(http:[^ ]*\).*/\1/p' "$TMP/server.log" | head -1)
	[[ -n $URL ]] && break
	kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; exit 1; }
	sleep 0.1
done
[[ -n $URL ]] || { log "the server did not start"; cat "$TMP/server.log" >&2; exit 1; }
TOKEN=$(tr -d '\n' <"$TMP/data/admin.token")
status() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$SERVER_PID/status"; } # kB
cputicks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
HWM0=$(status VmHWM)
CPU0=$(cputicks)

log "== publish to $URL ($CACHE cache)"
prepare "$SRC"
TIMEV=()
if [[ -x /usr/bin/time ]] && /usr/bin/time -v true 2>/dev/null; then
	TIMEV=(/usr/bin/time -v -o "$TMP/client.time")
fi
t0=$(now)
"${TIMEV[@]}" "$BIN" release publish --progress never --server "$URL" --token "$TOKEN" \
	--product bench --version 1.0.0 "$SRC" >"$TMP/publish.out"
t1=$(now)
PUB_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
HWM=$(status VmHWM)
RSS=$(status VmRSS)
CPU1=$(cputicks)
TCK=$(getconf CLK_TCK)
CLIENT_RSS=- CLIENT_CPU=-
if [[ -s $TMP/client.time ]]; then
	CLIENT_RSS=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$TMP/client.time")
	CLIENT_CPU=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.2f", u+s}' "$TMP/client.time")
fi
grep -q '^published bench 1.0.0' "$TMP/publish.out" || { cat "$TMP/publish.out" >&2; exit 1; }

awk -v bytes="$BYTES" -v cp="$CP_S" -v pub="$PUB_S" -v hwm="$HWM" -v hwm0="$HWM0" -v rss="$RSS" \
	-v cpu="$(((CPU1 - CPU0)))" -v tck="$TCK" -v crss="$CLIENT_RSS" -v ccpu="$CLIENT_CPU" \
	-v cache="$CACHE" -v nproc="$(nproc)" 'BEGIN {
	cpmb = bytes / cp / 1e6; pubmb = bytes / pub / 1e6
	printf "%-34s %s\n", "bytes", bytes
	printf "%-34s %s (nproc %s)\n", "page cache", cache, nproc
	printf "%-34s %8.3f s  %8.1f MB/s\n", "cp + fsync", cp, cpmb
	printf "%-34s %8.3f s  %8.1f MB/s\n", "release publish (upload + sign)", pub, pubmb
	printf "%-34s %8.2f x cp   (goal >= 0.5)\n", "ratio", pubmb / cpmb
	printf "%-34s %8.1f MB    (goal < 100; %.1f MB before the upload)\n", "server peak RSS (VmHWM)", hwm / 1024, hwm0 / 1024
	printf "%-34s %8.1f MB\n", "server RSS after (VmRSS)", rss / 1024
	printf "%-34s %8.2f s\n", "server CPU during publish", cpu / tck
	printf "%-34s %8s MB, CPU %s s\n", "client peak RSS", crss, ccpu
}'
