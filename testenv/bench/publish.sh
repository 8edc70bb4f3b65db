#!/usr/bin/env bash
# Publish benchmark: publishes a bundle of SIZE (default 1G) incompressible
# bytes to a real `updateserver serve` on loopback and compares the wall
# clock with `cp` of the same .tar.gz on the same filesystem; reports the
# server's peak RSS (VmHWM) during the run.
#
#   bash testenv/bench/publish.sh              # 1 GiB
#   SIZE=256M RUNS=1 bash testenv/bench/publish.sh    # quicker
#
# Environment:
#   SIZE    payload size for head -c (default 1G)
#   RUNS    cp and publish are timed alternately RUNS times (default 3);
#           the table shows every run and the medians
#   PORT    server port (default 0: any free port, read from its log)
#   CACHE   cold: sync and drop the page cache before each timed step
#           (needs root and a writable /proc/sys/vm/drop_caches); warm:
#           sync and read the source once before each step. Default cold
#           when permitted, else warm.
#   TMPDIR  where the bundle, the cp copy and the server's data dir go
#           (one filesystem for all; needs about 3 x SIZE free)
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
RUNS=${RUNS:-3}
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
if ! make -C "$ROOT" --no-print-directory build >&2; then
	# Only the server is needed: do not let the agent's build stop us.
	log "make build failed; building bin/updateserver alone"
	(cd "$ROOT" && "${GO:-go}" build -trimpath -ldflags '-s -w' -o bin/updateserver ./updateserver/cmd/updateserver)
fi

log "== bundle: $SIZE of /dev/urandom, tar | gzip -1"
mkdir -p "$TMP/bundle/files"
printf 'product = "bench"\nversion = "1.0.0"\n' >"$TMP/bundle/bundle.toml"
head -c "$SIZE" /dev/urandom >"$TMP/bundle/files/payload.bin"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
	-C "$TMP/bundle" -cf - bundle.toml files | gzip -1 >"$TMP/bundle.tar.gz"
rm -rf "$TMP/bundle"
SRC=$TMP/bundle.tar.gz
BYTES=$(stat -c %s "$SRC")

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
TIMEV=()
if [[ -x /usr/bin/time ]] && /usr/bin/time -v true 2>/dev/null; then
	TIMEV=(/usr/bin/time -v -o "$TMP/client.time")
fi

# Each run times cp, then publish (a new version each run); the published
# target is deleted afterwards so the disk holds at most two copies.
CP_ALL=() PUB_ALL=() SCPU_ALL=() CCPU_ALL=() CRSS=0
for run in $(seq "$RUNS"); do
	log "== run $run/$RUNS: cp ($CACHE cache)"
	prepare "$SRC"
	t0=$(now)
	cp --reflink=never "$SRC" "$TMP/copy.tar.gz"
	sync "$TMP/copy.tar.gz"
	t1=$(now)
	CP_ALL+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')")
	rm -f "$TMP/copy.tar.gz"

	log "== run $run/$RUNS: release publish to $URL ($CACHE cache)"
	prepare "$SRC"
	c0=$(cputicks)
	t0=$(now)
	"${TIMEV[@]}" "$BIN" release publish --progress never --server "$URL" --token "$TOKEN" \
		--product bench --version "1.0.$run" "$SRC" >"$TMP/publish.out"
	t1=$(now)
	c1=$(cputicks)
	grep -q "^published bench 1.0.$run" "$TMP/publish.out" || { cat "$TMP/publish.out" "$TMP/server.log" >&2; exit 1; }
	PUB_ALL+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')")
	SCPU_ALL+=("$(awk -v c="$((c1 - c0))" -v t="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", c/t}')")
	if [[ -s $TMP/client.time ]]; then
		CCPU_ALL+=("$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.2f", u+s}' "$TMP/client.time")")
		r=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$TMP/client.time")
		if ((r > CRSS)); then CRSS=$r; fi
	fi
	find "$TMP/data/targets" -type f -name '*.tar.gz' -delete
done
HWM=$(status VmHWM)
RSS=$(status VmRSS)

awk -v bytes="$BYTES" -v cps="${CP_ALL[*]}" -v pubs="${PUB_ALL[*]}" -v scpu="${SCPU_ALL[*]}" \
	-v ccpu="${CCPU_ALL[*]:-}" -v hwm="$HWM" -v hwm0="$HWM0" -v rss="$RSS" -v crss="$CRSS" \
	-v cache="$CACHE" -v nproc="$(nproc)" '
function median(s, a, n, i, j, t) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
BEGIN {
	n = split(cps, cp, " "); split(pubs, pub, " "); split(scpu, sc, " "); split(ccpu, cc, " ")
	printf "bytes %d, page cache %s, nproc %s, MB = 10^6 bytes\n\n", bytes, cache, nproc
	printf "%-6s %10s %10s %12s %10s %7s %10s %10s\n", "run", "cp s", "cp MB/s", "publish s", "MB/s", "ratio", "srv CPU s", "cli CPU s"
	for (i = 1; i <= n; i++)
		printf "%-6d %10.3f %10.1f %12.3f %10.1f %7.2f %10s %10s\n", i, cp[i], bytes/cp[i]/1e6, pub[i], bytes/pub[i]/1e6, cp[i]/pub[i], sc[i], (i in cc) ? cc[i] : "-"
	mc = median(cps); mp = median(pubs)
	printf "%-6s %10.3f %10.1f %12.3f %10.1f %7.2f   (goal ratio >= 0.5)\n\n", "median", mc, bytes/mc/1e6, mp, bytes/mp/1e6, mc/mp
	printf "server peak RSS (VmHWM) %.1f MB (goal < 100; %.1f MB before the first upload), VmRSS at the end %.1f MB\n", hwm/1024, hwm0/1024, rss/1024
	if (crss > 0) printf "client peak RSS %.1f MB\n", crss/1024
}'
