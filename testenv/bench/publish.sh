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
#   SOURCE  file (default): publish the ready-made .tar.gz; dir: publish
#           the bundle directory itself, as the release team does (the
#           client packs and gzips it while uploading); cp still copies
#           the .tar.gz, as a yardstick
#   BASE    another updateserver binary to compare with (e.g. one built
#           from main): each run then also publishes with it (its own
#           server and client, its own data dir), the two in alternating
#           order right after the same cp, so both meet the same load; the
#           table shows both and the medians of each. Use an even RUNS:
#           the publish right after cp is slower (0.3-1.5 s per GiB on
#           this project's VMs, whichever binary it is: the disk is still
#           busy with cp's data below the guest), and with an odd RUNS
#           this tree's binary takes that place once more than BASE
#
# Each row also shows, from the server's "bundle staged" log line, where
# the upload's time went on the server: receiving (and writing) the body,
# the checks' tail (scan and hash) after the last byte landed, and what
# the final fsync took beyond that tail, in seconds ("-" from a server
# that does not log them). The staged file is fsynced in the background
# every 128 MiB as it is written, so the final fsync has one step left. What is left of the
# publish time is the client's start, its check that the release does
# not exist yet, and the publish request after the upload.
#
# Every run shows the 1-minute load average at its start: on a shared
# machine the publish (CPU-bound: socket, sha256, gunzip) slows with the
# load far more than cp (disk-bound) does, so compare figures of one load,
# or use BASE.
#
# Both timed steps end with their data on disk: cp is followed by
# `sync FILE` (fsync) inside the timed region, as the server fsyncs the
# staged upload before answering. Everything else is flushed with `sync`
# before each timed step so that neither pays for the other's writeback.
# MB is 10^6 bytes, as in `go test -bench`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SIZE=${SIZE:-1G}
SOURCE=${SOURCE:-file}
case $SOURCE in file | dir) ;; *)
	printf 'SOURCE=%s: give file (the .tar.gz) or dir (the bundle directory)\n' "$SOURCE" >&2
	exit 2
	;;
esac
PORT=${PORT:-0}
RUNS=${RUNS:-3}
BIN=$ROOT/bin/updateserver
BASE=${BASE:-}
if [[ -n $BASE && ! -x $BASE ]]; then
	printf 'BASE=%s is not an executable updateserver binary\n' "$BASE" >&2
	exit 2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/publish-bench.XXXXXX")
SERVER_PIDS=()
cleanup() {
	local pid
	for pid in "${SERVER_PIDS[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
	done
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
	elif [[ -d $1 ]]; then
		find "$1" -type f -exec cat {} + >/dev/null
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
SRC=$TMP/bundle.tar.gz
PUBSRC=$SRC
if [[ $SOURCE == dir ]]; then
	PUBSRC=$TMP/bundle
else
	rm -rf "$TMP/bundle"
fi
BYTES=$(stat -c %s "$SRC")

# start_server NAME BINARY: a server of its own on loopback, with its own
# data dir; sets URL[NAME], TOKEN[NAME] and SPID[NAME].
declare -A URL TOKEN SPID
start_server() {
	local name=$1 bin=$2 url= port=$PORT
	[[ $name == base ]] && port=0
	"$bin" serve --data "$TMP/data-$name" --listen "127.0.0.1:$port" >"$TMP/server-$name.log" 2>&1 &
	SPID[$name]=$!
	SERVER_PIDS+=("$!")
	for _ in $(seq 300); do
		url=$(sed -n 's/.*msg="update server listening" addr=\(http:[^ ]*\).*/\1/p' "$TMP/server-$name.log" | head -1)
		[[ -n $url ]] && break
		kill -0 "${SPID[$name]}" 2>/dev/null || { cat "$TMP/server-$name.log" >&2; exit 1; }
		sleep 0.1
	done
	[[ -n $url ]] || { log "the server ($bin) did not start"; cat "$TMP/server-$name.log" >&2; exit 1; }
	URL[$name]=$url
	TOKEN[$name]=$(tr -d '\n' <"$TMP/data-$name/admin.token")
}
NAMES=(new)
log "== server"
start_server new "$BIN"
if [[ -n $BASE ]]; then
	log "== server (BASE=$BASE)"
	start_server base "$BASE"
	NAMES+=(base)
fi
status() { awk -v k="$2:" '$1 == k {print $2}' "/proc/${SPID[$1]}/status"; } # kB
cputicks() { awk '{print $14 + $15}' "/proc/${SPID[$1]}/stat"; }
HWM0=$(status new VmHWM)
TIMEV=()
if [[ -x /usr/bin/time ]] && /usr/bin/time -v true 2>/dev/null; then
	TIMEV=(/usr/bin/time -v -o "$TMP/client.time")
fi

# publish_with NAME RUN: publish SRC as version 1.0.RUN with NAME's binary
# (client and server) and append its figures to PUB, SCPU and CCPU[NAME].
declare -A BINOF=([new]=$BIN [base]=$BASE) PUB SCPU CCPU PHASES
CRSS=0
publish_with() {
	local name=$1 run=$2 c0 c1 t0 t1 r
	log "== run $run/$RUNS: release publish of the $SOURCE to ${URL[$name]} ($name, $CACHE cache)"
	prepare "$PUBSRC"
	c0=$(cputicks "$name")
	t0=$(now)
	"${TIMEV[@]}" "${BINOF[$name]}" release publish --progress never --server "${URL[$name]}" --token "${TOKEN[$name]}" \
		--product bench --version "1.0.$run" "$PUBSRC" >"$TMP/publish.out"
	t1=$(now)
	c1=$(cputicks "$name")
	grep -q "^published bench 1.0.$run" "$TMP/publish.out" || { cat "$TMP/publish.out" "$TMP/server-$name.log" >&2; exit 1; }
	PHASES[$name]+=" $(phases "$TMP/server-$name.log")"
	PUB[$name]+=" $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')"
	SCPU[$name]+=" $(awk -v c="$((c1 - c0))" -v t="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", c/t}')"
	if [[ -s $TMP/client.time ]]; then
		CCPU[$name]+=" $(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.2f", u+s}' "$TMP/client.time")"
		r=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$TMP/client.time")
		if [[ $name == new ]] && ((r > CRSS)); then CRSS=$r; fi
	else
		CCPU[$name]+=" -"
	fi
	find "$TMP/data-$name/targets" -type f -name '*.tar.gz' -delete
}

# phases LOG: receive/scan_tail/fsync of the last "bundle staged" line of
# LOG, in seconds ("-" when it has none).
phases() {
	grep 'msg="bundle staged"' "$1" | tail -1 | awk '
	function secs(v) {
		if (v ~ /ms$/) return substr(v, 1, length(v) - 2) / 1000
		if (v ~ /µs$/) return substr(v, 1, length(v) - 3) / 1e6
		if (v ~ /ns$/) return substr(v, 1, length(v) - 2) / 1e9
		if (v ~ /m[0-9.]+s$/) { split(v, m, "m"); return m[1] * 60 + substr(m[2], 1, length(m[2]) - 1) }
		return substr(v, 1, length(v) - 1) + 0
	}
	{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "receive") r = secs(kv[2]); if (kv[1] == "scan_tail") t = secs(kv[2]); if (kv[1] == "fsync") f = secs(kv[2]) } }
	END { if (r == "") print "-"; else printf "%.2f/%.2f/%.2f", r, t, f }'
}

# Each run times cp, then publish (a new version each run; with BASE, both
# binaries, the first alternating); the published target is deleted
# afterwards so the disk holds at most two copies.
CP_ALL=() LOAD_ALL=()
for run in $(seq "$RUNS"); do
	LOAD_ALL+=("$(cut -d' ' -f1 /proc/loadavg)")
	log "== run $run/$RUNS: cp ($CACHE cache, load ${LOAD_ALL[-1]})"
	prepare "$SRC"
	t0=$(now)
	cp --reflink=never "$SRC" "$TMP/copy.tar.gz"
	sync "$TMP/copy.tar.gz"
	t1=$(now)
	CP_ALL+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')")
	rm -f "$TMP/copy.tar.gz"

	order=("${NAMES[@]}")
	if ((${#NAMES[@]} == 2 && run % 2 == 0)); then order=(base new); fi
	for name in "${order[@]}"; do publish_with "$name" "$run"; done
done
HWM=$(status new VmHWM)
RSS=$(status new VmRSS)

awk -v bytes="$BYTES" -v cps="${CP_ALL[*]}" -v loads="${LOAD_ALL[*]}" \
	-v pubs="${PUB[new]}" -v scpu="${SCPU[new]}" -v ccpu="${CCPU[new]}" -v phs="${PHASES[new]}" \
	-v bpubs="${PUB[base]:-}" -v bscpu="${SCPU[base]:-}" -v bccpu="${CCPU[base]:-}" -v bphs="${PHASES[base]:-}" \
	-v hwm="$HWM" -v hwm0="$HWM0" -v rss="$RSS" -v crss="$CRSS" \
	-v cache="$CACHE" -v source="$SOURCE" -v nproc="$(nproc)" '
function median(s, a, n, i, j, t) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
function row(label, load, c, p, s, k, ph) {
	printf "%-8s %5s %8.3f %9.1f %10.3f %8.1f %6.2f %9s %9s  %s\n", label, load, c, bytes/c/1e6, p, bytes/p/1e6, c/p, s, k, ph
}
function table(title, pubs, scpu, ccpu, phs, pub, sc, cc, ph, i, mc, mp) {
	split(pubs, pub, " "); split(scpu, sc, " "); split(ccpu, cc, " "); split(phs, ph, " ")
	if (title != "") print title
	printf "%-8s %5s %8s %9s %10s %8s %6s %9s %9s  %s\n", "run", "load", "cp s", "cp MB/s", "publish s", "MB/s", "ratio", "srv CPU s", "cli CPU s", "server: receive/scan tail/fsync s"
	for (i = 1; i <= n; i++) row(i, ld[i], cp[i], pub[i], sc[i], cc[i], ph[i])
	mc = median(cps); mp = median(pubs)
	printf "%-8s %5s %8.3f %9.1f %10.3f %8.1f %6.2f %9.2f %9s   (goal ratio >= 0.5)\n\n", "median", "", mc, bytes/mc/1e6, mp, bytes/mp/1e6, mc/mp, median(scpu), ccpu ~ /-/ ? "-" : sprintf("%.2f", median(ccpu))
}
BEGIN {
	n = split(cps, cp, " "); split(loads, ld, " ")
	if (source == "dir") printf "published: the bundle directory (packed by the client); cp: the .tar.gz of it\n"
	printf "bytes %d, page cache %s, nproc %s, MB = 10^6 bytes, load = 1-minute load average at the start of the run\n\n", bytes, cache, nproc
	table(bpubs == "" ? "" : "this tree (bin/updateserver):", pubs, scpu, ccpu, phs)
	if (bpubs != "") table("BASE, in the same runs:", bpubs, bscpu, bccpu, bphs)
	printf "server peak RSS (VmHWM) %.1f MB (goal < 100; %.1f MB before the first upload), VmRSS at the end %.1f MB\n", hwm/1024, hwm0/1024, rss/1024
	if (crss > 0) printf "client peak RSS %.1f MB\n", crss/1024
}'
