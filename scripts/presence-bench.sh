#!/usr/bin/env bash
# What presence costs (issue 9): a channel of 1,000 members, each its own user,
# churning at 100 per second (every 10 ms one member's stream closes and a new
# user's opens), on a presence-* channel and on an ordinary channel, same load.
# Reports the server's CPU and what each member receives per second.
#
#   scripts/presence-bench.sh                 # 3 rounds of the three runs below
#   scripts/presence-bench.sh --rounds 1 --seconds 5
#   scripts/presence-bench.sh --redis         # the same on one node with --redis
#
# The runs, each against a fresh release herald with --presence-grace 1s (so
# every churned member's leave is sent within the run):
#   plain         an ordinary channel (no presence: the connections only)
#   presence      a presence-* channel, --presence-max-members 5000 (every join
#                 and leave is sent to all ~1,000 members)
#   presence-cap  the same with the default --presence-max-members 100 (above it
#                 no joins or leaves are sent; each new member gets a truncated
#                 snapshot)
# With --redis, a redis-server of its own (port HERALD_BENCH_REDIS_PORT,
# default HERALD_BENCH_PORT + 1, no persistence, flushed before each run) backs
# herald, and Redis's CPU is reported too: every open and close of a presence
# stream is then a script call and a record of the shared log.
# Output: target/bench/presence[-redis].md and .jsonl. Environment:
# HERALD_BENCH_PORT (default 18080). Only the processes this script starts are
# stopped, by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/target/bench
PORT=${HERALD_BENCH_PORT:-18080}
ROUNDS=3
SECONDS_PER_RUN=10
MEMBERS=1000
CHURN=100
REDIS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --redis) REDIS=1; shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --members) MEMBERS=$2; shift 2 ;;
    --churn) CHURN=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--seconds S] [--members N] [--churn N] [--redis]" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
(cd "$ROOT" && cargo build --release --quiet)
cargo build --release --quiet --manifest-path "$ROOT/scripts/herald-bench/Cargo.toml"
HERALD=$ROOT/target/release/herald
BENCH=$ROOT/scripts/herald-bench/target/release/herald-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
SECRET="presence-bench-$$-$RANDOM"

REDIS_PORT=${HERALD_BENCH_REDIS_PORT:-$((PORT + 1))}
REDIS_PID=""
REDIS_DIR=""
stop_redis() {
  if [ -n "$REDIS_PID" ]; then
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  fi
  [ -n "$REDIS_DIR" ] && rm -rf "$REDIS_DIR"
  REDIS_PID=""
}
# CPU seconds (user + system) a process has used so far.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"
}
SUFFIX=""
REDIS_ARGS=()
if [ -n "$REDIS" ]; then
  SUFFIX="-redis"
  REDIS_DIR=$(mktemp -d)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$REDIS_DIR" --daemonize no >"$REDIS_DIR/log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  REDIS_ARGS=(--redis "redis://127.0.0.1:$REDIS_PORT/0")
fi

HERALD_PID=""
stop_herald() {
  if [ -n "$HERALD_PID" ] && kill -0 "$HERALD_PID" 2>/dev/null; then
    kill -TERM "$HERALD_PID" 2>/dev/null || true
    for _ in $(seq 1 70); do kill -0 "$HERALD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$HERALD_PID" 2>/dev/null || true
    wait "$HERALD_PID" 2>/dev/null || true
  fi
  HERALD_PID=""
}
trap 'stop_herald; stop_redis' EXIT
trap 'exit 130' INT TERM

start_herald() { # max-members
  HERALD_JWT_SECRET=$SECRET "$HERALD" --listen "127.0.0.1:$PORT" --max-connections 20000 \
    --presence-grace 1s --presence-max-members "$1" --log warn "${REDIS_ARGS[@]}" \
    >>"$OUT/presence-herald.log" 2>&1 &
  HERALD_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "presence-bench.sh: herald did not come up on port $PORT" >&2
  exit 1
}

RESULTS=$OUT/presence$SUFFIX.jsonl
: >"$RESULTS"
: >"$OUT/presence-herald.log"
for round in $(seq 1 "$ROUNDS"); do
  for run in plain presence presence-cap; do
    case $run in
      plain) channel=room-bench; max=5000 ;;
      presence) channel=presence-bench; max=5000 ;;
      presence-cap) channel=presence-bench; max=100 ;;
    esac
    [ -n "$REDIS" ] && redis-cli -p "$REDIS_PORT" flushall >/dev/null
    start_herald "$max"
    [ -n "$REDIS" ] && redis_before=$(cpu_seconds "$REDIS_PID")
    line=$("$BENCH" presence --addr "127.0.0.1:$PORT" --pid "$HERALD_PID" --secret "$SECRET" \
      --channel "$channel" --members "$MEMBERS" --churn "$CHURN" --seconds "$SECONDS_PER_RUN")
    if [ -n "$REDIS" ]; then
      # Over the whole connect + measure span, so an upper bound for the run.
      redis_cpu=$(awk -v a="$redis_before" -v b="$(cpu_seconds "$REDIS_PID")" -v s="$SECONDS_PER_RUN" \
        'BEGIN { printf "%.1f", 100 * (b - a) / s }')
      line=${line%\}},\"redis_cpu_pct\":$redis_cpu}
    fi
    stop_herald
    echo "{\"round\":$round,\"run\":\"$run\",\"result\":$line}" >>"$RESULTS"
    echo "round $round $run: $line" >&2
  done
done

python3 - "$RESULTS" "$OUT/presence$SUFFIX.md" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = []
for name, what in [("plain", "ordinary channel"), ("presence", "presence-* channel, max members 5000"),
                   ("presence-cap", "presence-* channel, default max members 100")]:
    rs = [r["result"] for r in runs if r["run"] == name]
    if not rs:
        continue
    med = lambda k: statistics.median(r[k] for r in rs)
    redis = f" (Redis {med('redis_cpu_pct'):.1f} %)" if "redis_cpu_pct" in rs[0] else ""
    rows.append(f"| {what} | {med('server_cpu_pct'):.1f} %{redis} | {med('joins_per_member_s'):.1f} | "
                f"{med('leaves_per_member_s'):.1f} | {med('bytes_per_member_s'):,.0f} B | {len(rs)} |")
r0 = runs[0]["result"]
out = [f"{r0['members']} members, {round(r0['churn_per_s'])} churned per second, {r0['seconds']:.0f} s per run, medians over rounds",
       "", "| channel | server CPU (share of one core) | joins per member per s | leaves per member per s | received per member per s | runs |",
       "|---|---:|---:|---:|---:|---:|", *rows]
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
