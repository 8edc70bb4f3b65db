#!/usr/bin/env bash
# Database backup benchmark: builds a SQLite database of SIZE_MB megabytes
# (default 1024; 1 MiB random blobs inserted in one transaction, then WAL
# mode) and times, RUNS times in one process, the agent's own backup
# (migrate.DB.Backup, what the engine runs in backing_up) and restore
# (migrate.DB.Rollback, what it runs in rolling_back), each verified as
# the agent verifies it, against `cp` + fsync of the same file timed just
# before each. Everything is flushed with `sync` before each timed step.
# Prints each run, then a RESULT line with the medians and backup_x_cp,
# restore_x_cp (goal: <= 1.5 each). On a shared machine the disk's speed
# drifts: compare ratios from one run, not seconds across runs.
#
#   bash testenv/bench/backup.sh                  # 1 GiB, 3 runs
#   SIZE_MB=256 RUNS=1 bash testenv/bench/backup.sh
#
# Environment:
#   SIZE_MB  database size (default 1024)
#   RUNS     timed runs (default 3)
#   TMPDIR   where the database, the backup and the cp copy go (one
#            filesystem; needs about 3 x SIZE_MB free)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
export BENCH_DB_MB=${SIZE_MB:-1024}
export BENCH_RUNS=${RUNS:-3}
export BENCH_DIR=${TMPDIR:-/tmp}
go test -run '^$' -bench '^BenchmarkSQLiteBackupRestore$' -benchtime 1x -count 1 -timeout 0 ./pkg/migrate/ | grep -E '^(run |RESULT|Benchmark|ok|FAIL)'
