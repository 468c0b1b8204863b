#!/usr/bin/env bash
# kill -9 rounds against the release binary (issue 10), more than `cargo test` runs.
#
#   scripts/crash.sh          # 200 rounds
#   scripts/crash.sh 1000     # 1000 rounds
#
# Builds the release binary and runs tests/api/crash.rs against it: each
# round starts herald with a --data-dir, 16 publishers publish as fast as
# they can, herald is killed with SIGKILL at a random point, and after the
# restart every acknowledged event must be replayed once, in order, within
# --history (a second test runs a fifth of the rounds with --history 30
# and --fsync off).
# Also runs the torn-tail test. Only the processes the tests start are
# killed, by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1:-200}
cd "$ROOT"
cargo build --release --quiet
HERALD_TEST_BIN=$ROOT/target/release/herald HERALD_CRASH_ROUNDS=$ROUNDS \
  cargo test --quiet --test api -- crash:: --nocapture --test-threads 1
