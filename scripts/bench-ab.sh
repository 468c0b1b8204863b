#!/usr/bin/env bash
# Two herald binaries side by side, in the same run (A B A B): the same
# load tool and scenarios as scripts/bench.sh, no Nchan. For a change whose
# throughput must stay "within noise": both binaries take every round on the
# same busy machine, so the same-round ratio is what to read.
#
#   scripts/bench-ab.sh BEFORE_BIN AFTER_BIN [ROUNDS] [SCENARIOS]
#   scripts/bench-ab.sh target/herald-before target/release/herald 3 fanout-1k,publish,idle
#
#   BENCH_TRANSPORT=ws scripts/bench-ab.sh BEFORE AFTER 3 fanout-1k,idle   # subscribers over WebSocket
#
# Builds scripts/herald-bench (release) if needed. Writes
# target/bench-ab/runs.jsonl and prints per-scenario medians and the
# after/before ratio of each round's figures. Stops only what it started.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BEFORE=$1
AFTER=$2
RUNS=${3:-3}
SCENARIOS=${4:-fanout-1k,publish}
PORT=${HERALD_BENCH_PORT:-18080}
TRANSPORT=${BENCH_TRANSPORT:-h1}
OUT=$ROOT/target/bench-ab
mkdir -p "$OUT"
cargo build --release --quiet --manifest-path "$ROOT/scripts/herald-bench/Cargo.toml"
BENCH=$ROOT/scripts/herald-bench/target/release/herald-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
: >"$OUT/runs.jsonl"
PID=""
stop() { [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; PID=""; }
trap stop EXIT
for round in $(seq 1 "$RUNS"); do
  for s in ${SCENARIOS//,/ }; do
    for target in before after; do
      bin=$BEFORE; [ "$target" = after ] && bin=$AFTER
      "$bin" --listen "127.0.0.1:$PORT" --max-connections 20000 --max-channels 100000 --log warn \
        >>"$OUT/herald.log" 2>&1 &
      PID=$!
      for _ in $(seq 1 100); do curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz" 2>/dev/null && break; sleep 0.1; done
      line=$("$BENCH" run --target "herald-$target" --addr "127.0.0.1:$PORT" --pid "$PID" --scenario "$s" \
        --transport "$TRANSPORT" --round "$round" --out "$OUT/runs.jsonl" 2>>"$OUT/bench-tool.log" | tail -1) || true
      printf '%s round %s %-10s %s\n' "$target" "$round" "$s" "$(echo "$line" | cut -c1-200)" >&2
      stop
      sleep 1
    done
  done
done
python3 - "$OUT/runs.jsonl" <<'PY'
import json, sys, statistics as st
from collections import defaultdict
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = defaultdict(dict)
for r in runs:
    by[(r["scenario"], r["round"])][r["target"]] = r["metrics"]
keys = ["deliveries_per_s", "publishes_per_s", "srv_cpu_us_per_delivery", "srv_cpu_us_per_publish",
        "rss_kib_per_sub", "lat_p99_us", "lost", "dup", "ooo"]
for scen in sorted({s for s, _ in by}):
    rounds = [v for (s, _), v in sorted(by.items()) if s == scen and len(v) == 2]
    print(f"{scen}: {len(rounds)} rounds")
    for k in keys:
        pairs = [(v["herald-before"].get(k), v["herald-after"].get(k)) for v in rounds]
        pairs = [(b, a) for b, a in pairs if isinstance(b, (int, float)) and isinstance(a, (int, float))]
        if not pairs:
            continue
        ratios = [a / b for b, a in pairs if b]
        print(f"  {k}: before {st.median(b for b, _ in pairs):.4g}, after {st.median(a for _, a in pairs):.4g}"
              + (f", after/before per round {', '.join(f'{x:.2f}' for x in ratios)}" if ratios else ""))
PY
