#!/usr/bin/env bash
# Builds pgroute and the benchmark in release mode and runs the benchmark; flags go to pgroute-bench
# (see `tests/bench/run.sh --help`). Needs root (PgBouncer and PostgreSQL run as `postgres`), the
# PostgreSQL server packages (with pgbench) and pgbouncer.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo build --release -p pgroute -p pgroute-tests --bin pgroute --bin pgroute-bench
# The idle-client memory comparison holds thousands of sockets open in the benchmark process. Without
# CAP_SYS_RESOURCE (some containers) the hard limit cannot be raised; take the hard limit then, and let
# pgroute-bench say so if it is too low for --idle.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec target/release/pgroute-bench "$@"
