#!/usr/bin/env bash
# Scale-out on Redis (issue 11), measured in one run on this machine:
#
#   scripts/bench.sh --redis [--quick] [--runs N]   (or this script directly)
#
# Each round runs, back to back:
#   single   one herald node, no Redis: fanout-1k (1000 subscribers, one
#            channel, 4 publishers) and publish (16 publishers, own channels);
#   A<-B     two nodes on one redis-server: subscribers on node A,
#            publishers on node B;
#   B<-A     the same the other way round, so each node is measured;
#   redis    publish through node A: rate, latency, and Redis's CPU per publish.
# Then target/bench/redis.md: medians over rounds, each node's deliveries/s
# as a share of the single node's (issue 11 asks >= 80 %), publish rate and
# latency through Redis, Redis CPU per publish and per event delivered.
#
# Ports: HERALD_BENCH_PORT (single node, default 18080), +1 and +2 (nodes A
# and B), HERALD_BENCH_REDIS_PORT (default HERALD_BENCH_PORT+5). Everything on
# 127.0.0.1; only the processes this script starts are stopped, by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/target/bench
PORT=${HERALD_BENCH_PORT:-18080}
PORT_A=$((PORT + 1))
PORT_B=$((PORT + 2))
REDIS_PORT=${HERALD_BENCH_REDIS_PORT:-$((PORT + 5))}
THREADS=${BENCH_THREADS:-1}
RUNS=3
QUICK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --redis) ;;
    --quick) QUICK=--quick; RUNS=1 ;;
    --runs) RUNS=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
command -v redis-server >/dev/null || { echo "bench-redis.sh: redis-server not installed" >&2; exit 2; }

mkdir -p "$OUT/redis"
echo "== building herald and herald-bench (release)" >&2
(cd "$ROOT" && cargo build --release --quiet)
cargo build --release --quiet --manifest-path "$ROOT/scripts/herald-bench/Cargo.toml"
HERALD=$ROOT/target/release/herald
BENCH=$ROOT/scripts/herald-bench/target/release/herald-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

wait_http() {
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-redis.sh: $1 did not come up (see $OUT/redis/*.log)" >&2
  exit 1
}

start_herald() { # port [extra args...]; prints the pid
  local port=$1; shift
  "$HERALD" --listen "127.0.0.1:$port" --max-connections 20000 --max-channels 100000 \
    --log warn "$@" >>"$OUT/redis/herald-$port.log" 2>&1 &
  echo $!
}

run() { # target addr pid scenario round [more herald-bench args]
  local target=$1 addr=$2 pid=$3 scen=$4 round=$5; shift 5
  local line
  line=$("$BENCH" run --target "$target" --addr "$addr" --pid "$pid" --scenario "$scen" \
    --round "$round" --threads "$THREADS" $QUICK --out "$RUNS_FILE" "$@" 2>>"$OUT/redis/bench-tool.log" | tail -1) || true
  printf '   %-10s %-9s %s\n' "$scen" "$target" "$(echo "$line" | cut -c1-150)" >&2
  sleep 1
}

RUNS_FILE=$OUT/redis/runs.jsonl
: >"$RUNS_FILE"
START=$(date +%s)
for round in $(seq 1 "$RUNS"); do
  echo "== round $round/$RUNS" >&2
  single=$(start_herald "$PORT"); PIDS+=("$single")
  wait_http "http://127.0.0.1:$PORT/healthz"
  run single "127.0.0.1:$PORT" "$single" fanout-1k "$round"
  run single "127.0.0.1:$PORT" "$single" publish "$round"
  stop_all

  rm -f "$OUT/redis/dump.rdb"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$OUT/redis" --daemonize no >"$OUT/redis/redis.log" 2>&1 &
  redis=$!; PIDS+=("$redis")
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break
    sleep 0.1
  done
  a=$(start_herald "$PORT_A" --redis "redis://127.0.0.1:$REDIS_PORT/0"); PIDS+=("$a")
  b=$(start_herald "$PORT_B" --redis "redis://127.0.0.1:$REDIS_PORT/0"); PIDS+=("$b")
  wait_http "http://127.0.0.1:$PORT_A/healthz"
  wait_http "http://127.0.0.1:$PORT_B/healthz"
  run 'A<-B' "127.0.0.1:$PORT_A" "$a" fanout-1k "$round" \
    --pub-addr "127.0.0.1:$PORT_B" --watch "pubnode=$b,redis=$redis"
  run 'B<-A' "127.0.0.1:$PORT_B" "$b" fanout-1k "$round" \
    --pub-addr "127.0.0.1:$PORT_A" --watch "pubnode=$a,redis=$redis"
  run redis "127.0.0.1:$PORT_A" "$a" publish "$round" --watch "redis=$redis,other=$b"
  stop_all
done

REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
python3 "$ROOT/scripts/bench_redis_report.py" "$RUNS_FILE" "$OUT/redis.md" \
  "herald $REV, $(redis-server --version | cut -d' ' -f1-3), $(nproc) cores ($CPU); load tool, nodes and Redis share them. Rounds: $RUNS${QUICK:+ (quick)}; took $(( $(date +%s) - START )) s."
echo "wrote $OUT/redis.md" >&2
