#!/usr/bin/env bash
# Rollout benchmark (issue 13): a rollout over AGENTS simulated agents
# (testenv/loadgen, the real agent protocol on loopback) with
# --max-parallel PARALLEL against a real `updateserver serve`: create ->
# every site assigned (agents report their job done at once, so the next
# sites start as jobs end), the server's CPU time for it, and how long a
# pause takes to stop new starts.
#
#   bash testenv/bench/rollout.sh                    # 10,000 agents, 500 at once
#   AGENTS=2000 PARALLEL=100 bash testenv/bench/rollout.sh
#
# One process holds at most ~18,500 connections here (open-file limit
# 20,000), and each agent keeps one long-poll open: AGENTS stays below that.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
AGENTS=${AGENTS:-10000}
PARALLEL=${PARALLEL:-500}
PORT=${PORT:-18556}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

cd "$ROOT"
go build -o "$work/updateserver" ./updateserver/cmd/updateserver
go build -o "$work/loadgen" ./testenv/loadgen
ulimit -n "$(ulimit -Hn)"
"$work/updateserver" serve --data "$work/data" --listen "127.0.0.1:$PORT" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$work/data/admin.token" ] && curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
"$work/loadgen" --server "http://127.0.0.1:$PORT" --token "$(cat "$work/data/admin.token")" \
  --scenario rollout --agents "$AGENTS" --max-parallel "$PARALLEL" --rounds 1 --pid "$pid" --timeout 10m
echo "RESULT rollout agents=$AGENTS max_parallel=$PARALLEL server_peak_rss_kib=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)"
