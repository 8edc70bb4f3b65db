# testenv/perf/lib.sh: what the perf scripts share (brought in from the
# shared perf harness; `make bench-*` runs them). A script sets NAME and sources
# this file with its arguments:
#
#   NAME=checkin-throughput
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"
#
# $1 is the project checkout (default: this repository), after
# `make build`: bin/updateserver and bin/updateagent are used as they are.
# Everything a script starts (server, nginx, helpers) runs as its child, on
# 127.0.0.1, with its files in one temp dir; all of it is stopped (by PID,
# checked against the PID's start time) and removed on exit. KEEP=1 keeps
# the temp dir and its logs.
set -euo pipefail

PERF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJ=$(cd "${1:-$PERF/../..}" 2>/dev/null && pwd) || { echo "$NAME: no directory ${1:-}" >&2; exit 2; }
S=$PROJ/bin/updateserver
A=$PROJ/bin/updateagent
if [[ ! -x $S || ! -x $A ]]; then
	echo "$NAME: $PROJ has no bin/updateserver and bin/updateagent: run 'make build' there first" >&2
	exit 2
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/perf-$NAME.XXXXXX")
PIDS=() # "pid:starttime" of every child we started

log() { printf '[%s %s] %s\n' "$NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "FAIL: $*"
	exit 1
}
need() { command -v "$1" >/dev/null || die "$1 is not installed (${2:-apt-get install -y $1})"; }
now() { date +%s.%N; }

# starttime PID: field 22 of /proc/PID/stat, to tell our child from a
# later process that got the same PID.
starttime() { awk '{sub(/^.*\) /, ""); print $20}' "/proc/$1/stat" 2>/dev/null || true; }

# spawn LOG CMD...: run CMD in the background (our child), stdout and
# stderr to $TMP/LOG.log; its PID in SPAWNED. Never call it inside $(...).
spawn() {
	local name=$1
	shift
	"$@" >"$TMP/$name.log" 2>&1 &
	SPAWNED=$!
	PIDS+=("$SPAWNED:$(starttime "$SPAWNED")")
}

# stop PID: SIGTERM our child PID, SIGKILL after 15 s, reap it.
stop() {
	local pid=$1 e keep=()
	for e in "${PIDS[@]}"; do
		if [[ ${e%%:*} == "$pid" ]]; then
			if [[ -n ${e#*:} && $(starttime "$pid") == "${e#*:}" ]]; then
				kill -TERM "$pid" 2>/dev/null || true
				for _ in $(seq 150); do
					[[ $(starttime "$pid") == "${e#*:}" ]] || break
					[[ $(awk '{sub(/^.*\) /, ""); print $1}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
					sleep 0.1
				done
				if [[ $(starttime "$pid") == "${e#*:}" && $(awk '{sub(/^.*\) /, ""); print $1}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
					kill -KILL "$pid" 2>/dev/null || true
				fi
			fi
			wait "$pid" 2>/dev/null || true
		else
			keep+=("$e")
		fi
	done
	PIDS=(${keep[@]+"${keep[@]}"})
}

cleanup() {
	local rc=$? i
	trap - EXIT
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop "${PIDS[i]%%:*}"; done
	# A script's own last step (e.g. dropping a scratch database), once
	# everything it started is stopped.
	if [[ -n ${ON_EXIT:-} ]]; then "$ON_EXIT" || log "WARNING: $ON_EXIT failed"; fi
	if [[ -n ${KEEP:-} ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
set -E
trap 'log "FAIL: line $LINENO: \"$BASH_COMMAND\" exited $?"' ERR

# loopback URL: refuse anything but http://127.x.y.z:port.
loopback() { [[ $1 =~ ^http://127\.[0-9]+\.[0-9]+\.[0-9]+:[0-9]+(/.*)?$ ]] || die "$1 is not a loopback URL"; }

# wait_url LOG SED PID [SECONDS]: print what SED extracts from LOG once it
# appears; fail if PID exits first or the time runs out.
wait_url() {
	local logf=$1 expr=$2 pid=$3 secs=${4:-30} u
	for _ in $(seq $((secs * 10))); do
		u=$(sed -n "$expr" "$logf" 2>/dev/null | head -1)
		if [[ -n $u ]]; then
			echo "$u"
			return
		fi
		kill -0 "$pid" 2>/dev/null || { tail -20 "$logf" >&2; die "$(basename "$logf" .log) exited at start"; }
		sleep 0.1
	done
	tail -20 "$logf" >&2
	die "$(basename "$logf" .log) did not start within ${secs}s"
}

# start_server [FLAGS...]: a fresh updateserver on a free loopback port with
# a temp data dir. Sets URL, SPID, DATA; exports UPDATESERVER_URL/TOKEN.
start_server() {
	DATA=$TMP/data
	spawn server "$S" serve --data "$DATA" --listen 127.0.0.1:0 "$@"
	SPID=$SPAWNED
	URL=$(wait_url "$TMP/server.log" 's/.*msg="update server listening" addr=\(http:[^ ]*\).*/\1/p' "$SPID")
	loopback "$URL"
	export UPDATESERVER_URL=$URL
	UPDATESERVER_TOKEN=$(tr -d '\n' <"$DATA/admin.token")
	export UPDATESERVER_TOKEN
	log "updateserver pid $SPID at $URL"
}

# build_tools: build testenv/perf/tools (stdlib-only Go helpers) into $TMP/bin.
build_tools() {
	need go "Go 1.22 or later"
	(cd "$PROJ" && GOTOOLCHAIN=local timeout 600 go build -o "$TMP/bin/" ./testenv/perf/tools/...) >&2 ||
		die "go build of $PROJ/testenv/perf/tools failed"
}

# start_tool NAME [ARGS...]: start one of perf/tools' servers (hello,
# refserver) on a free loopback port. Sets TOOL_URL and TOOL_PID.
start_tool() {
	local name=$1
	shift
	spawn "$name" "$TMP/bin/$name" --listen 127.0.0.1:0 "$@"
	TOOL_PID=$SPAWNED
	TOOL_URL=$(wait_url "$TMP/$name.log" 's/^listening \(http:[^ ]*\).*/\1/p' "$TOOL_PID")
	loopback "$TOOL_URL"
	log "$name pid $TOOL_PID at $TOOL_URL"
}

# freeport: a loopback TCP port nothing listens on, below the ephemeral range.
freeport() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 12000))
		if [[ -z $(ss -Hltn "sport = :$p" 2>/dev/null) ]]; then
			echo "$p"
			return
		fi
	done
	die "no free port found"
}

# start_nginx TARGETS_DIR [METADATA_UPSTREAM]: nginx in the foreground (our
# child), serving TARGETS_DIR at /tuf/targets/ with sendfile, and proxying
# /tuf/metadata/ to METADATA_UPSTREAM when given. Sets NGINX_URL, NGPID.
start_nginx() {
	local targets=$1 upstream=${2:-} port d=$TMP/nginx user='' meta=''
	need nginx
	port=$(freeport)
	mkdir -p "$d"/{body,proxy,fastcgi,uwsgi,scgi}
	[[ $EUID == 0 ]] && user="user root;" # the server's files are 0600 root
	[[ -n $upstream ]] && meta="location /tuf/metadata/ { proxy_pass $upstream; }"
	cat >"$d/nginx.conf" <<-CONF
		$user
		worker_processes auto;
		pid $d/nginx.pid;
		error_log $d/error.log warn;
		events { worker_connections 1024; }
		http {
		    access_log off;
		    sendfile on;
		    tcp_nopush on;
		    keepalive_timeout 65;
		    default_type application/gzip;
		    client_body_temp_path $d/body;
		    proxy_temp_path $d/proxy;
		    fastcgi_temp_path $d/fastcgi;
		    uwsgi_temp_path $d/uwsgi;
		    scgi_temp_path $d/scgi;
		    server {
		        listen 127.0.0.1:$port;
		        location /tuf/targets/ { alias $targets/; }
		        $meta
		    }
		}
	CONF
	spawn nginx nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;'
	NGPID=$SPAWNED
	NGINX_URL=http://127.0.0.1:$port
	for _ in $(seq 100); do
		[[ $(curl -s -o /dev/null -w '%{http_code}' "$NGINX_URL/" 2>/dev/null) != 000 ]] && break
		if [[ -z $(starttime "$NGPID") || $(awk '{sub(/^.*\) /, ""); print $1}' "/proc/$NGPID/stat" 2>/dev/null) == Z ]]; then
			cat "$TMP/nginx.log" >&2
			die "nginx exited at start"
		fi
		sleep 0.1
	done
	log "nginx pid $NGPID at $NGINX_URL"
}

# publish_bundle PRODUCT VERSION SIZE: publish a bundle whose files/big is
# SIZE (head -c syntax) of /dev/urandom: incompressible, as the bundle is
# gzip'd. Sets TARGET (TUF target path), TSHA, TLEN, TFILE (the file the
# server serves), TPATH (its URL path), PUBLISH_S (seconds).
publish_bundle() {
	local product=$1 version=$2 size=$3 b=$TMP/bundle-$2 t0 t1 dir base
	mkdir -p "$b/files"
	head -c "$size" /dev/urandom >"$b/files/big"
	t0=$(now)
	timeout 1800 "$S" release publish --progress never --product "$product" --version "$version" "$b" >"$TMP/publish-$version.log" 2>&1 ||
		{ cat "$TMP/publish-$version.log" >&2; die "release publish $product $version failed"; }
	t1=$(now)
	PUBLISH_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
	rm -rf "$b"
	"$S" release list --product "$product" --json >"$TMP/releases.json"
	TARGET=$(jq -r --arg v "$version" '.[] | select(.version == $v) | .target' "$TMP/releases.json")
	TSHA=$(jq -r --arg v "$version" '.[] | select(.version == $v) | .sha256' "$TMP/releases.json")
	TLEN=$(jq -r --arg v "$version" '.[] | select(.version == $v) | .length' "$TMP/releases.json")
	[[ -n $TARGET && $TARGET != null ]] || die "release list --json has no target for $product $version"
	# Consistent snapshots: <dir>/<sha256>.<base>, under /tuf/targets/.
	base=${TARGET##*/}
	dir=
	[[ $TARGET == */* ]] && dir=${TARGET%/*}/
	TPATH=/tuf/targets/$dir$TSHA.$base
	TFILE=$DATA/targets/$dir$TSHA.$base
	[[ -f $TFILE ]] || die "the published target is not at $TFILE"
	[[ $(stat -c %s "$TFILE") == "$TLEN" ]] || die "$TFILE is not $TLEN bytes"
	log "published $product $version: $TARGET, $TLEN bytes, in ${PUBLISH_S}s"
}

# status_kb PID FIELD: a /proc/PID/status field (VmHWM, VmRSS) in kB.
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo -1; }

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b+0 == 0 || a == "nan" || b == "nan") print "nan"; else printf "%.3f", a/b}'; }
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; } # kB -> MiB

# nofile N: raise the soft open-files limit to N (or the hard limit);
# prints the limit now in force. Go programs raise their own soft limit to
# the hard one, so the hard limit is what counts for the server.
nofile() {
	local want=$1 hard soft
	hard=$(ulimit -Hn) soft=$(ulimit -n)
	[[ $hard == unlimited ]] && hard=1048576
	[[ $soft == unlimited ]] && soft=1048576
	if ((soft < want)); then
		ulimit -n "$((want < hard ? want : hard))" 2>/dev/null || true
	fi
	ulimit -n
}
