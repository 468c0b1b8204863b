#!/usr/bin/env bash
# High availability on Redis (SPEC §14), measured on this machine: the
# publish rate and latency of one herald node (herald-bench `publish`: 16
# publishers, own channels) on
#   single      one redis-server, no replica (SPEC §9)
#   replicas-0  a primary with one replica, --redis-replicas 0
#   replicas-1  the same, --redis-replicas 1 (WAIT 1 after each publish)
# Rounds alternate the three (default 3 rounds). The time from a primary
# kill to the first answered publish is measured by the failover mode of
# scripts/cluster-chaos.sh (it needs Sentinels).
#
#   scripts/bench-ha.sh [--runs N] [--quick]
#
# Ports: HERALD_BENCH_PORT (default 18090) for herald, +5 and +6 for Redis.
# Everything on 127.0.0.1; only processes this script starts are stopped,
# by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/target/bench/ha
PORT=${HERALD_BENCH_PORT:-18090}
R1=$((PORT + 5))
R2=$((PORT + 6))
RUNS=3
QUICK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=--quick; RUNS=1 ;;
    --runs) RUNS=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
command -v redis-server >/dev/null || { echo "bench-ha.sh: redis-server not installed" >&2; exit 2; }
mkdir -p "$OUT"
echo "== building herald and herald-bench (release)" >&2
(cd "$ROOT" && cargo build --release --quiet)
cargo build --release --quiet --manifest-path "$ROOT/scripts/herald-bench/Cargo.toml"
HERALD=$ROOT/target/release/herald
BENCH=$ROOT/scripts/herald-bench/target/release/herald-bench

PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

redis() { # port [args...]
  local port=$1; shift
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$OUT" --daemonize no "$@" >"$OUT/redis-$port.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 50); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  echo "bench-ha.sh: redis on $port did not start" >&2; exit 1
}

RUNS_FILE=$OUT/runs.jsonl
: >"$RUNS_FILE"
for round in $(seq 1 "$RUNS"); do
  for setup in single replicas-0 replicas-1; do
    redis "$R1"
    extra=()
    if [ "$setup" != single ]; then
      redis "$R2" --replicaof 127.0.0.1 "$R1"
      for _ in $(seq 1 100); do
        redis-cli -p "$R2" info replication | grep -q master_link_status:up && break
        sleep 0.1
      done
      extra=(--redis-replicas "${setup#replicas-}")
    fi
    "$HERALD" --listen "127.0.0.1:$PORT" --log warn --redis "redis://127.0.0.1:$R1/0" \
      "${extra[@]}" >>"$OUT/herald.log" 2>&1 &
    node=$!; PIDS+=("$node")
    for _ in $(seq 1 100); do
      curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz" 2>/dev/null && break
      sleep 0.1
    done
    line=$("$BENCH" run --target "$setup" --addr "127.0.0.1:$PORT" --pid "$node" \
      --scenario publish --round "$round" $QUICK --out "$RUNS_FILE" 2>>"$OUT/bench-tool.log" | tail -1) || true
    printf '   round %s %-11s %s\n' "$round" "$setup" "$(echo "$line" | cut -c1-160)" >&2
    stop_all
    sleep 1
  done
done
python3 - "$RUNS_FILE" "$OUT/results.md" "herald $(cd "$ROOT" && git rev-parse --short HEAD), $(redis-server --version | cut -d' ' -f1-3), $(nproc) cores, $RUNS rounds" <<'PY'
import json, statistics, sys
runs, out, title = sys.argv[1:4]
rows = [json.loads(line) for line in open(runs) if line.strip()]
lines = [f"Publish through one herald node (herald-bench `publish`, 16 publishers), {title}; medians over rounds.", "",
         "| setup | publishes/s | vs single | p50 latency ms | p99 latency ms | errors |", "|---|---:|---:|---:|---:|---:|"]
med = lambda setup, key: statistics.median(r["metrics"][key] for r in rows if r["target"] == setup and r.get("ok"))
base = med("single", "publishes_per_s")
for setup in ["single", "replicas-0", "replicas-1"]:
    rate = med(setup, "publishes_per_s")
    lines.append(f"| {setup} | {rate:,.0f} | {rate / base:.2f}x | {med(setup, 'lat_p50_us') / 1000:.2f} | "
                 f"{med(setup, 'lat_p99_us') / 1000:.1f} | {max(r['metrics']['publish_errors'] for r in rows if r['target'] == setup)} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "wrote $OUT/results.md" >&2
