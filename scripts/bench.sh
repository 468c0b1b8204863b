#!/usr/bin/env bash
# herald vs Nchan, side by side, on this machine (issue 4).
#
#   scripts/bench.sh                 # full suite: 3 rounds, every scenario (< 20 min)
#   scripts/bench.sh --quick         # 1 round, smaller counts (development)
#   scripts/bench.sh --runs 5 --scenarios fanout-1k,publish
#   scripts/bench.sh --quick --scenarios idle,idle-ws,fanout-1k,fanout-1k-ws   # WebSocket vs SSE
#
# Builds herald (release) and scripts/herald-bench, then for each round starts
# a fresh herald and a fresh Nchan (../shared/peers/nchan-start.sh), runs every
# scenario against herald then Nchan (A B A B …), and stops both. Afterwards
# `herald-bench report` writes target/bench/results.md and results.json:
# medians over rounds, herald/Nchan ratios taken within each round, and the
# targets of issue 4. Raw runs: target/bench/runs.jsonl; server logs beside it.
#
# Environment: HERALD_BENCH_PORT (default 18080), NCHAN_BENCH_PORT (18090),
# PEERS_DIR (default <repo>/../shared/peers), BENCH_THREADS (load tool
# threads, default 1), BENCH_FANOUT_10K_EVENTS (events per 10k-subscriber
# fanout run, default 200; the issue's 1000 takes Nchan minutes per run here). Only the processes this script starts are stopped, by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/target/bench
PEERS=${PEERS_DIR:-$ROOT/../shared/peers}
HERALD_PORT=${HERALD_BENCH_PORT:-18080}
NCHAN_PORT=${NCHAN_BENCH_PORT:-18090}
THREADS=${BENCH_THREADS:-1}
RUNS=3
QUICK=""
SCENARIOS=""

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=--quick; RUNS=1 ;;
    --runs) RUNS=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ ! -x "$PEERS/nchan-start.sh" ] && [ ! -f "$PEERS/nchan-start.sh" ]; then
  echo "bench.sh: Nchan peer scripts not found at $PEERS" >&2
  echo "  expected nchan-start.sh and nchan-stop.sh there (../shared/peers beside the repo);" >&2
  echo "  set PEERS_DIR=/path/to/peers to point elsewhere." >&2
  exit 2
fi

mkdir -p "$OUT"
export NCHAN_DIR=$OUT/nchan          # our own nginx dir: never touches another Nchan
export NCHAN_PORT NCHAN_WORKERS=${NCHAN_WORKERS:-2}
export PEER_TTL=${PEER_TTL:-2400}    # the peer script's own watchdog, seconds

echo "== building herald and herald-bench (release)" >&2
(cd "$ROOT" && cargo build --release --quiet)
cargo build --release --quiet --manifest-path "$ROOT/scripts/herald-bench/Cargo.toml"
HERALD=$ROOT/target/release/herald
BENCH=$ROOT/scripts/herald-bench/target/release/herald-bench
[ -n "$SCENARIOS" ] || SCENARIOS=$("$BENCH" list | paste -sd, -)

# Both servers and the tool need ~10k sockets each; the hard limit is 20000.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

HERALD_PID=""
NCHAN_PID=""
stop_herald() {
  if [ -n "$HERALD_PID" ] && kill -0 "$HERALD_PID" 2>/dev/null; then
    kill -TERM "$HERALD_PID" 2>/dev/null || true
    for _ in $(seq 1 70); do kill -0 "$HERALD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$HERALD_PID" 2>/dev/null || true
    wait "$HERALD_PID" 2>/dev/null || true
  fi
  HERALD_PID=""
}
stop_nchan() {
  if [ -n "$NCHAN_PID" ]; then bash "$PEERS/nchan-stop.sh" >/dev/null 2>&1 || true; fi
  NCHAN_PID=""
}
cleanup() { stop_herald; stop_nchan; }
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

start_herald() {
  "$HERALD" --listen "127.0.0.1:$HERALD_PORT" --max-connections 20000 --max-channels 100000 \
    --log warn >>"$OUT/herald.log" 2>&1 &
  HERALD_PID=$!
  if ! wait_http "http://127.0.0.1:$HERALD_PORT/healthz"; then
    echo "bench.sh: herald did not come up on port $HERALD_PORT (see $OUT/herald.log)" >&2
    exit 1
  fi
}
start_nchan() {
  if [ -f "$NCHAN_DIR/nginx.pid" ] && kill -0 "$(cat "$NCHAN_DIR/nginx.pid")" 2>/dev/null; then
    echo "bench.sh: an Nchan from an earlier run is still up in $NCHAN_DIR; stopping it" >&2
    bash "$PEERS/nchan-stop.sh" >/dev/null 2>&1 || true
  fi
  NCHAN_PID=$(bash "$PEERS/nchan-start.sh" | tail -1)
  if ! [[ "$NCHAN_PID" =~ ^[0-9]+$ ]] || ! kill -0 "$NCHAN_PID" 2>/dev/null; then
    echo "bench.sh: Nchan did not start (see $NCHAN_DIR/logs)" >&2
    exit 1
  fi
  # nchan answers 4xx to a publish without a body, but any answer means it is up
  for _ in $(seq 1 50); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$NCHAN_PORT/" && break
    sleep 0.1
  done
}

RUNS_FILE=$OUT/runs.jsonl
: >"$RUNS_FILE"
: >"$OUT/herald.log"
START=$(date +%s)
IFS=, read -r -a SCEN <<<"$SCENARIOS"
for round in $(seq 1 "$RUNS"); do
  echo "== round $round/$RUNS" >&2
  start_herald
  start_nchan
  for s in "${SCEN[@]}"; do
    for target in herald nchan; do
      # *-ws scenarios subscribe over WebSockets: herald only (the peer
      # scripts' Nchan serves event streams); compared with herald's SSE runs.
      if [ "$target" = nchan ] && [[ "$s" == *-ws ]]; then continue; fi
      if [ "$target" = herald ]; then
        # Memory per idle subscriber is measured on a fresh herald: memory an
        # earlier scenario freed would otherwise be reused and hide the cost.
        if [[ "$s" == idle* ]] && [ "$s" != "${SCEN[0]}" ]; then
          stop_herald
          start_herald
        fi
        if ! kill -0 "$HERALD_PID" 2>/dev/null; then
          echo "   herald died; restarting it (see $OUT/herald.log)" >&2
          start_herald
        fi
        addr=127.0.0.1:$HERALD_PORT; pid=$HERALD_PID
      else
        addr=127.0.0.1:$NCHAN_PORT; pid=$NCHAN_PID
      fi
      t0=$(date +%s%N)
      line=$("$BENCH" run --target "$target" --addr "$addr" --pid "$pid" --scenario "$s" \
        --round "$round" --threads "$THREADS" $QUICK --out "$RUNS_FILE" 2>>"$OUT/bench-tool.log" | tail -1) || true
      printf '   %-17s %-6s %6sms  %s\n' "$s" "$target" "$(( ($(date +%s%N) - t0) / 1000000 ))" \
        "$(echo "$line" | cut -c1-160)" >&2
      sleep 1 # let closed sockets drain before the next run
    done
  done
  stop_herald
  stop_nchan
done

NCHAN_VER=$( (nginx -v 2>&1; dpkg-query -W -f ' libnginx-mod-nchan ${Version}' libnginx-mod-nchan 2>/dev/null) | tr '\n' ' ')
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
E10K=${BENCH_FANOUT_10K_EVENTS:-$([ -n "$QUICK" ] && echo 50 || echo 200)}
REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
TITLE="## herald vs Nchan — $(date -u '+%Y-%m-%d %H:%M UTC')

Machine: $(nproc) cores ($CPU), $(free -g | awk '/Mem:/{print $2}') GiB, Linux $(uname -r); load tool and servers share it.
herald $REV; Nchan: $NCHAN_VER(${NCHAN_WORKERS} workers). Rounds: $RUNS${QUICK:+ (quick: smaller counts)}; 10k-subscriber fanouts publish $E10K events per run (BENCH_FANOUT_10K_EVENTS); suite took $(( $(date +%s) - START )) s.
Reproduce: \`scripts/bench.sh\` (\`--quick\` for a short run)."
"$BENCH" report --in "$RUNS_FILE" --md "$OUT/results.md" --json "$OUT/results.json" --title "$TITLE"
echo "wrote $OUT/results.md and $OUT/results.json" >&2
