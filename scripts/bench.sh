#!/usr/bin/env bash
# herald vs Nchan, side by side, on this machine (issue 4).
#
#   scripts/bench.sh                 # full suite: 3 rounds, every scenario (< 20 min)
#   scripts/bench.sh --quick         # 1 round, smaller counts (development)
#   scripts/bench.sh --runs 5 --scenarios fanout-1k,publish
#   scripts/bench.sh --transports none   # HTTP/1.1 only, no TLS/HTTP/2 rows
#
# Transports (issues 12, 13): in the same rounds, the `idle` and `fanout-1k`
# scenarios also run against more herald processes: one with --h2c
# (subscribers over HTTP/2, 100 streams per connection), one with a
# self-signed --tls-cert (subscribers over TLS + HTTP/1.1 and TLS + HTTP/2),
# and a plain one whose subscribers upgrade to WebSocket (`ws`).
# `--transports h2c,tls-h1,tls-h2,ws` (the default) picks which; they are
# herald-only rows in their own table (Nchan is measured over HTTP/1.1).
#   scripts/bench.sh --runs 3 --scenarios idle,fanout-1k --transports ws   # WebSocket vs SSE vs Nchan
#
# Access control (issue 8): in the same rounds, `publish` and `fanout-1k`
# also run against a herald with --publish-token and --jwt-secret (random
# secrets, given through the environment): publishers send the publish token,
# subscribers a JWT from `herald token`. `--auth none` leaves it out.
#   scripts/bench.sh --runs 9 --scenarios publish --transports none --nchan none   # auth on vs off only
#
# `--nchan none` runs herald (and its variants) alone, A B A B with nothing
# in between: the steadiest same-round ratios on a busy machine.
#   scripts/bench.sh --redis [--quick]  # two nodes on Redis vs one node (issue 11,
#                                       # scripts/bench-redis.sh)
#   scripts/bench.sh --durable       # --data-dir vs in-memory herald (issue 10), no Nchan
#
# Builds herald (release) and scripts/herald-bench, then for each round starts
# a fresh herald and a fresh Nchan (../shared/peers/nchan-start.sh), runs every
# scenario against herald then Nchan (A B A B …), and stops both. Afterwards
# `herald-bench report` writes target/bench/results.md and results.json:
# medians over rounds, herald/Nchan ratios taken within each round, and the
# targets of issue 4. Raw runs: target/bench/runs.jsonl; server logs beside it.
#
# Environment: HERALD_BENCH_PORT (default 18080; the h2c and TLS heralds use
# the next three ports), NCHAN_BENCH_PORT (18090),
# PEERS_DIR (default <repo>/../shared/peers), BENCH_THREADS (load tool
# threads, default 1), BENCH_FANOUT_10K_EVENTS (events per 10k-subscriber
# fanout run, default 200; the issue's 1000 takes Nchan minutes per run here). Only the processes this script starts are stopped, by PID.
#
# --durable: in the same run, an in-memory herald and a `--data-dir` herald
# (`--fsync batch`, on this machine's disk under target/bench/durable) take
# the publish scenario with 1, 16 and 64 keep-alive publishers (A B A B);
# fsyncs per publish come from the durable server's /metrics; then 1 million
# events (1000 channels x 1000, 100 B each) are published, the server is
# killed with SIGKILL and restarted, and its recovery time is read from
# herald_recovery_seconds. Writes target/bench/durable.md.
#
# --idempotency: publishes/s with an Idempotency-Key on every request (each
# its own key, none a retry) against none, in the same run (A B A B), on an
# in-memory herald and on a herald with --redis (a redis-server started
# here on HERALD_BENCH_PORT+5); the publish scenario, 16 keep-alive
# publishers; a fresh herald per run. Also reads the resident memory the
# in-memory herald gained per key kept. Writes target/bench/idempotency.md.
# With HERALD_BASELINE_BIN, that binary takes the same runs just before the
# current one (rows "baseline"): what a change did, measured in one run.
#   scripts/bench.sh --idempotency [--quick] [--runs N]
#
# HERALD_BASELINE_BIN=/path/to/an/older/herald: in the same rounds, every
# scenario also runs against that binary (a herald of its own, on
# HERALD_BENCH_PORT+6), just before the current herald and Nchan (A B C A B C);
# the report gives now / baseline per scenario (issues 17, 22: the hot path
# stays as fast).
#   HERALD_BASELINE_BIN=/tmp/old/target/release/herald scripts/bench.sh \
#     --scenarios idle,fanout-1k,publish --transports none --auth none
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
TRANSPORTS=h2c,tls-h1,tls-h2,ws
AUTH=on
NCHAN=on
# One herald per transport (and one with access control), so no run reuses
# memory another one freed.
declare -A T_PORT=([h2c]=$((HERALD_PORT + 1)) [tls-h1]=$((HERALD_PORT + 2)) [tls-h2]=$((HERALD_PORT + 3))
  [ws]=$((HERALD_PORT + 4)) [auth]=$((HERALD_PORT + 5)) [baseline]=$((HERALD_PORT + 6)))
BASELINE=${HERALD_BASELINE_BIN:-}
if [ -n "$BASELINE" ] && [ ! -x "$BASELINE" ]; then
  echo "bench.sh: HERALD_BASELINE_BIN=$BASELINE is not an executable" >&2
  exit 2
fi
declare -A T_PID=()
DURABLE=""
IDEMPOTENCY=""

# Scale-out on Redis (issue 11) is its own suite: scripts/bench-redis.sh.
for arg in "$@"; do
  [ "$arg" = --redis ] && exec "$ROOT/scripts/bench-redis.sh" "$@"
done

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=--quick; RUNS=1 ;;
    --runs) RUNS=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --transports) TRANSPORTS=$2; shift ;;
    --auth) AUTH=$2; shift ;;
    --nchan) NCHAN=$2; shift ;;
    -h|--help) sed -n '2,67p' "$0"; exit 0 ;;
    --durable) DURABLE=1 ;;
    --idempotency) IDEMPOTENCY=1 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "$DURABLE$IDEMPOTENCY" ] && [ "$NCHAN" = on ] && [ ! -x "$PEERS/nchan-start.sh" ] && [ ! -f "$PEERS/nchan-start.sh" ]; then
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
# publish-1 and publish-64 belong to the durable comparison.
[ -n "$SCENARIOS" ] || SCENARIOS=$("$BENCH" list | grep -v '^publish-' | paste -sd, -)

# Both servers and the tool need ~10k sockets each; the hard limit is 20000.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

HERALD_PID=""
NCHAN_PID=""
stop_pid() { # pid
  if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 70); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
stop_herald() {
  stop_pid "$HERALD_PID"; HERALD_PID=""
  for t in "${!T_PID[@]}"; do stop_pid "${T_PID[$t]}"; done
  T_PID=()
}
stop_nchan() {
  if [ -n "$NCHAN_PID" ]; then bash "$PEERS/nchan-stop.sh" >/dev/null 2>&1 || true; fi
  NCHAN_PID=""
}
cleanup() { stop_herald; stop_nchan; }
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url (https: the self-signed pair is trusted by name)
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null --max-time 1 --cacert "$OUT/tls/cert.pem" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

herald_bg() { # port, extra flags...: starts herald (or $BIN) in the background; sets LAST_PID
  local port=$1; shift
  "${BIN:-$HERALD}" --listen "127.0.0.1:$port" --max-connections 20000 --max-channels 100000 \
    --log warn "$@" >>"$OUT/herald.log" 2>&1 &
  LAST_PID=$!
}
start_herald() {
  herald_bg "$HERALD_PORT"; HERALD_PID=$LAST_PID
  if ! wait_http "http://127.0.0.1:$HERALD_PORT/healthz"; then
    echo "bench.sh: herald did not come up on port $HERALD_PORT (see $OUT/herald.log)" >&2
    exit 1
  fi
  for t in ${TRANSPORTS//,/ }; do
    local port=${T_PORT[$t]:-}
    case "$t" in
      none) continue ;;
      h2c) herald_bg "$port" --h2c; url=http://127.0.0.1:$port/healthz ;;
      tls-h1|tls-h2) herald_bg "$port" --tls-cert "$OUT/tls/cert.pem" --tls-key "$OUT/tls/key.pem"
        url=https://localhost:$port/healthz ;;
      ws) herald_bg "$port"; url=http://127.0.0.1:$port/healthz ;;
      *) echo "bench.sh: unknown transport $t (h2c, tls-h1, tls-h2, ws or none)" >&2; exit 2 ;;
    esac
    T_PID[$t]=$LAST_PID
    wait_http "$url" || { echo "bench.sh: herald for $t did not come up (see $OUT/herald.log)" >&2; exit 1; }
  done
  if [ -n "$BASELINE" ]; then
    BIN=$BASELINE herald_bg "${T_PORT[baseline]}"
    T_PID[baseline]=$LAST_PID
    wait_http "http://127.0.0.1:${T_PORT[baseline]}/healthz" ||
      { echo "bench.sh: the baseline herald did not come up (see $OUT/herald.log)" >&2; exit 1; }
  fi
  if [ "$AUTH" = on ]; then
    HERALD_PUBLISH_TOKEN=$AUTH_PUBLISH_TOKEN HERALD_JWT_SECRET=$AUTH_JWT_SECRET herald_bg "${T_PORT[auth]}"
    T_PID[auth]=$LAST_PID
    wait_http "http://127.0.0.1:${T_PORT[auth]}/healthz" ||
      { echo "bench.sh: herald with access control did not come up (see $OUT/herald.log)" >&2; exit 1; }
  fi
}
# The transports run these scenarios (when selected with --scenarios too),
# the herald with access control those.
TRANSPORT_SCENARIOS=",idle,fanout-1k,"
AUTH_SCENARIOS=",publish,fanout-1k,"
case "$AUTH" in
  on)
    # Fresh random secrets for this run, known only to this script, herald
    # and the load tool (environment, never a command line).
    AUTH_PUBLISH_TOKEN=$(openssl rand -hex 32)
    AUTH_JWT_SECRET=$(openssl rand -hex 32)
    AUTH_SUBSCRIBE_TOKEN=$(HERALD_JWT_SECRET=$AUTH_JWT_SECRET "$HERALD" token --sub bench --subscribe '*' --ttl 3h)
    ;;
  none) ;;
  *) echo "bench.sh: --auth is on or none" >&2; exit 2 ;;
esac
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

# A self-signed pair for the TLS herald: the README's one command.
mkdir -p "$OUT/tls"
if [[ ",$TRANSPORTS," == *,tls-* ]] && [ ! -f "$OUT/tls/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
    -keyout "$OUT/tls/key.pem" -out "$OUT/tls/cert.pem" 2>/dev/null
fi

# ---- --durable: --data-dir herald against in-memory herald, same run ----
MEM_PID=""
DUR_PID=""
metric() { # port series
  curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v s="$2" '$1==s {print $2}'
}
start_one() { # port log args... ; prints the pid
  local port=$1 log=$2
  shift 2
  "${BIN:-$HERALD}" --listen "127.0.0.1:$port" --max-connections 20000 --max-channels 100000 \
    --log warn,herald=info "$@" >>"$log" 2>&1 &
  local pid=$!
  if ! wait_http "http://127.0.0.1:$port/healthz"; then
    echo "bench.sh: herald did not come up on port $port (see $log)" >&2
    exit 1
  fi
  echo "$pid"
}
run_durable() {
  local ddir=$OUT/durable mem_port=$HERALD_PORT dur_port=$((HERALD_PORT + 1))
  rm -rf "$ddir"
  mkdir -p "$ddir"
  local runs=$ddir/runs.jsonl fs=$ddir/fsyncs.jsonl log=$ddir/herald.log
  : >"$runs"; : >"$fs"; : >"$log"
  trap 'stop_pid "$MEM_PID"; stop_pid "$DUR_PID"' EXIT
  local start_s
  start_s=$(date +%s)
  for round in $(seq 1 "$RUNS"); do
    echo "== durable round $round/$RUNS" >&2
    MEM_PID=$(start_one "$mem_port" "$log")
    DUR_PID=$(start_one "$dur_port" "$log" --data-dir "$ddir/data-$round" --fsync batch)
    for s in publish-1 publish publish-64; do
      for target in herald-memory herald-durable; do
        local port=$mem_port pid=$MEM_PID f0=0 p0=0
        if [ "$target" = herald-durable ]; then
          port=$dur_port; pid=$DUR_PID
          f0=$(metric "$port" herald_log_fsyncs_total); p0=$(metric "$port" herald_events_published_total)
        fi
        line=$("$BENCH" run --target "$target" --addr "127.0.0.1:$port" --pid "$pid" --scenario "$s" \
          --round "$round" --threads "$THREADS" $QUICK --out "$runs" 2>>"$ddir/bench-tool.log" | tail -1) || true
        printf '   %-11s %-15s %s\n' "$s" "$target" "$(echo "$line" | cut -c1-120)" >&2
        if [ "$target" = herald-durable ]; then
          f1=$(metric "$port" herald_log_fsyncs_total); p1=$(metric "$port" herald_events_published_total)
          echo "{\"scenario\":\"$s\",\"round\":$round,\"fsyncs\":$((f1 - f0)),\"published\":$((p1 - p0))}" >>"$fs"
        fi
        sleep 1
      done
    done
    stop_pid "$MEM_PID"; stop_pid "$DUR_PID"
    du -sb "$ddir/data-$round" | awk '{print "   data dir after the round: " $1 " bytes"}' >&2
    rm -rf "$ddir/data-$round"
  done

  echo "== recovery of 1 million retained events" >&2
  DUR_PID=$(start_one "$dur_port" "$log" --data-dir "$ddir/recovery" --history 1000)
  python3 - "$dur_port" <<'PY'
import json, sys, urllib.request
port = sys.argv[1]
data = "x" * 100
for start in range(0, 1000, 2):  # 2 channels x 1000 events per request
    batch = [{"channel": f"c{c}", "data": data} for c in (start, start + 1) for _ in range(1000)]
    req = urllib.request.Request(f"http://127.0.0.1:{port}/publish", json.dumps(batch).encode(),
                                 {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=60).read()
PY
  kill -KILL "$DUR_PID"; wait "$DUR_PID" 2>/dev/null || true
  local bytes
  bytes=$(du -sb "$ddir/recovery" | awk '{print $1}')
  DUR_PID=$(start_one "$dur_port" "$log" --data-dir "$ddir/recovery" --history 1000)
  local rec retained
  rec=$(metric "$dur_port" herald_recovery_seconds)
  retained=$(curl -fsS "http://127.0.0.1:$dur_port/channels" | python3 -c 'import json,sys; print(sum(c["retained"] for c in json.load(sys.stdin)))')
  stop_pid "$DUR_PID"
  echo "{\"recovery_s\":$rec,\"retained\":$retained,\"bytes\":$bytes}" >"$ddir/recovery.json"
  rm -rf "$ddir/recovery"

  python3 - "$runs" "$fs" "$ddir/recovery.json" "$OUT/durable.md" "$RUNS" "$(( $(date +%s) - start_s ))" "${QUICK:+quick}" <<'PY'
import json, statistics, sys, subprocess
runs, fs, rec, out, rounds, took, quick = sys.argv[1:8]
rate, by_round = {}, {}
for line in open(runs):
    r = json.loads(line)
    if r.get("ok"):
        rate.setdefault((r["scenario"], r["target"]), []).append(r["metrics"]["publishes_per_s"])
        by_round[(r["scenario"], r["target"], r["round"])] = r["metrics"]["publishes_per_s"]
fsync = {}
for line in open(fs):
    r = json.loads(line)
    fsync.setdefault(r["scenario"], []).append(r["fsyncs"] / max(r["published"], 1))
recovery = json.load(open(rec))
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
med = lambda v: statistics.median(v) if v else float("nan")
lines = [
    f"## durable herald (--data-dir, --fsync batch) vs in-memory herald, same run",
    "",
    f"herald {rev}; {rounds} round(s){' (quick)' if quick else ''}; took {took} s. Machine shared with other work: figures vary with its load.",
    "",
    "Rates are medians over rounds; the ratio is durable / in-memory within each round, then the median.",
    "",
    "| publishers | in-memory publishes/s | durable publishes/s | durable / in-memory | fsyncs per publish |",
    "|---:|---:|---:|---:|---:|",
]
for s, n in (("publish-1", 1), ("publish", 16), ("publish-64", 64)):
    m, d = med(rate.get((s, "herald-memory"), [])), med(rate.get((s, "herald-durable"), []))
    ratios = [by_round[(s, "herald-durable", k[2])] / v for k, v in by_round.items()
              if k[0] == s and k[1] == "herald-memory" and (s, "herald-durable", k[2]) in by_round]
    lines.append(f"| {n} | {m:,.0f} | {d:,.0f} | {med(ratios):.2f} | {med(fsync.get(s, [])):.3f} |")
lines += [
    "",
    f"Recovery after kill -9 of {recovery['retained']:,} retained events "
    f"({recovery['bytes'] / 2**20:.0f} MiB on disk): {recovery['recovery_s']:.2f} s (herald_recovery_seconds).",
]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
  echo "wrote $OUT/durable.md" >&2
}

if [ -n "$DURABLE" ]; then
  run_durable
  exit 0
fi

# ---- --idempotency: Idempotency-Key on every publish vs none, same run ----
IDEM_PID=""
REDIS_PID=""
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
run_idempotency() {
  local idir=$OUT/idempotency port=$HERALD_PORT redis_port=$((HERALD_PORT + 5))
  command -v redis-server >/dev/null || { echo "bench.sh: redis-server not installed" >&2; exit 2; }
  rm -rf "$idir"; mkdir -p "$idir"
  local runs=$idir/runs.jsonl log=$idir/herald.log mem=$idir/memory.jsonl
  : >"$runs"; : >"$log"; : >"$mem"
  trap 'stop_pid "$IDEM_PID"; stop_pid "$REDIS_PID"' EXIT
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$idir" --daemonize no >"$idir/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break
    sleep 0.1
  done
  local start_s
  start_s=$(date +%s)
  for round in $(seq 1 "$RUNS"); do
    echo "== idempotency round $round/$RUNS" >&2
    for backend in memory redis; do
     for bin in ${BASELINE:+baseline} herald; do
      local bin_path=$HERALD target_prefix=""
      [ "$bin" = baseline ] && bin_path=$BASELINE && target_prefix=baseline-
      for keys in none keys; do
        local extra=() watch=()
        [ "$backend" = redis ] && extra=(--redis "redis://127.0.0.1:$redis_port/0" --redis-prefix "b$round$keys$bin") &&
          watch=(--watch "redis=$REDIS_PID")
        IDEM_PID=$(BIN=$bin_path start_one "$port" "$log" "${extra[@]}")
        local before
        before=$(rss_kib "$IDEM_PID")
        line=$(HERALD_BENCH_IDEMPOTENCY_KEYS=$([ "$keys" = keys ] && echo 1 || echo 0) \
          "$BENCH" run --target "$target_prefix$backend-$keys" --addr "127.0.0.1:$port" --pid "$IDEM_PID" --scenario publish "${watch[@]}" \
          --round "$round" --threads "$THREADS" $QUICK --out "$runs" 2>>"$idir/bench-tool.log" | tail -1) || true
        printf '   %-23s %s\n' "$target_prefix$backend-$keys" "$(echo "$line" | cut -c1-110)" >&2
        if [ "$backend" = memory ]; then
          local published
          published=$(metric "$port" herald_events_published_total)
          echo "{\"bin\":\"$bin\",\"keys\":\"$keys\",\"round\":$round,\"rss_gain_kib\":$(( $(rss_kib "$IDEM_PID") - before )),\"published\":$published}" >>"$mem"
        fi
        stop_pid "$IDEM_PID"; IDEM_PID=""
        sleep 1
      done
     done
    done
  done
  python3 - "$runs" "$mem" "$OUT/idempotency.md" "$RUNS" "$(( $(date +%s) - start_s ))" "${QUICK:+quick}" <<'PY'
import json, statistics, sys, subprocess, os
runs, mem, out, rounds, took, quick = sys.argv[1:7]
rate, by_round, cpu = {}, {}, {}
for line in open(runs):
    r = json.loads(line)
    if r.get("ok"):
        m = r["metrics"]
        v = m["publishes_per_s"]
        rate.setdefault(r["target"], []).append(v)
        by_round[(r["target"], r["round"])] = v
        for who in ("srv", "redis"):
            if f"{who}_cpu_us_per_publish" in m:
                cpu.setdefault((r["target"], who), []).append(m[f"{who}_cpu_us_per_publish"])
gain = {}
for line in open(mem):
    r = json.loads(line)
    gain.setdefault((r.get("bin", "herald"), r["keys"]), []).append((r["rss_gain_kib"], r["published"]))
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
med = lambda v: statistics.median(v) if v else float("nan")
lines = [
    "## publishes/s with an Idempotency-Key on every publish vs none, same run",
    "",
    f"herald {rev}; {rounds} round(s){' (quick)' if quick else ''}; took {took} s; {os.cpu_count()} cores shared "
    "with the load tool, Redis and other work on this machine: figures vary with its load.",
    "",
    "16 keep-alive publishers, each its own channel, no subscribers; every keyed publish has its own key (none is a retry).",
    "Rates are medians over rounds; the ratio is keys / none within each round, then the median.",
    "",
    "CPU per publish (µs, medians over rounds: utime+stime from /proc over the run) is herald's, and Redis's in parentheses.",
    "",
    "| herald | backend | none publishes/s | keys publishes/s | keys / none | CPU per publish, none | CPU per publish, keys |",
    "|---|---|---:|---:|---:|---:|---:|",
]
def cpu_cell(t):
    s = f"{med(cpu.get((t, 'srv'), [])):.1f}"
    if (t, "redis") in cpu:
        s += f" ({med(cpu[(t, 'redis')]):.1f})"
    return s
bins = [("baseline", "baseline-"), ("now", "")] if any(t.startswith("baseline-") for t in rate) else [("now", "")]
for b in ("memory", "redis"):
    for label, pre in bins:
        t = pre + b
        n, k = med(rate.get(f"{t}-none", [])), med(rate.get(f"{t}-keys", []))
        ratios = [by_round[(f"{t}-keys", r)] / v for (t2, r), v in by_round.items()
                  if t2 == f"{t}-none" and (f"{t}-keys", r) in by_round]
        lines.append(f"| {label} | {b} | {n:,.0f} | {k:,.0f} | {med(ratios):.2f} | {cpu_cell(t + '-none')} | {cpu_cell(t + '-keys')} |")
for label, bin_name in (("baseline", "baseline"), ("now", "herald")):
    keyed = gain.get((bin_name, "keys"))
    if keyed:
        plain = gain.get((bin_name, "none"), [(0, 0)] * len(keyed))
        per = [1024 * (g - n_g) / max(p, 1) for (g, p), (n_g, _) in zip(keyed, plain)]
        lines += ["", f"In-memory herald ({label}): resident memory gained per key kept, over the same run without keys: "
                  f"{med(per):,.0f} bytes (RSS, so allocator slack included)."]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
  echo "wrote $OUT/idempotency.md" >&2
}

if [ -n "$IDEMPOTENCY" ]; then
  run_idempotency
  exit 0
fi

RUNS_FILE=$OUT/runs.jsonl
: >"$RUNS_FILE"
: >"$OUT/herald.log"
START=$(date +%s)
IFS=, read -r -a SCEN <<<"$SCENARIOS"
for round in $(seq 1 "$RUNS"); do
  echo "== round $round/$RUNS" >&2
  start_herald
  [ "$NCHAN" = on ] && start_nchan
  for s in "${SCEN[@]}"; do
    targets="herald"
    [ -n "$BASELINE" ] && targets="herald-baseline herald"
    [ "$NCHAN" = on ] && targets="$targets nchan"
    if [[ "$TRANSPORT_SCENARIOS" == *,$s,* ]]; then
      for t in ${TRANSPORTS//,/ }; do [ "$t" = none ] || targets="$targets herald-$t"; done
    fi
    if [ "$AUTH" = on ] && [[ "$AUTH_SCENARIOS" == *,$s,* ]]; then targets="$targets herald-auth"; fi
    for target in $targets; do
      transport=(--transport h1)
      tokens=()
      if [ "$target" = nchan ]; then
        addr=127.0.0.1:$NCHAN_PORT; pid=$NCHAN_PID
      else
        if ! kill -0 "$HERALD_PID" 2>/dev/null; then
          echo "   herald died; restarting it (see $OUT/herald.log)" >&2
          stop_herald
          start_herald
        fi
        case "$target" in
          herald) addr=127.0.0.1:$HERALD_PORT; pid=$HERALD_PID ;;
          herald-baseline) addr=127.0.0.1:${T_PORT[baseline]}; pid=${T_PID[baseline]} ;;
          herald-auth) addr=127.0.0.1:${T_PORT[auth]}; pid=${T_PID[auth]}
            tokens=(HERALD_BENCH_PUBLISH_TOKEN="$AUTH_PUBLISH_TOKEN" HERALD_BENCH_SUBSCRIBE_TOKEN="$AUTH_SUBSCRIBE_TOKEN") ;;
          herald-*) t=${target#herald-}; addr=127.0.0.1:${T_PORT[$t]}; pid=${T_PID[$t]}
            transport=(--transport "$t" --tls-ca "$OUT/tls/cert.pem") ;;
        esac
      fi
      t0=$(date +%s%N)
      line=$(env "${tokens[@]}" "$BENCH" run --target "$target" --addr "$addr" --pid "$pid" --scenario "$s" "${transport[@]}" \
        --round "$round" --threads "$THREADS" $QUICK --out "$RUNS_FILE" 2>>"$OUT/bench-tool.log" | tail -1) || true
      printf '   %-17s %-14s %6sms  %s\n' "$s" "$target" "$(( ($(date +%s%N) - t0) / 1000000 ))" \
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
herald $REV${BASELINE:+ (baseline: $BASELINE)}; Nchan: $NCHAN_VER(${NCHAN_WORKERS} workers). Rounds: $RUNS${QUICK:+ (quick: smaller counts)}; 10k-subscriber fanouts publish $E10K events per run (BENCH_FANOUT_10K_EVENTS); suite took $(( $(date +%s) - START )) s.
Reproduce: \`scripts/bench.sh\` (\`--quick\` for a short run)."
"$BENCH" report --in "$RUNS_FILE" --md "$OUT/results.md" --json "$OUT/results.json" --title "$TITLE"
echo "wrote $OUT/results.md and $OUT/results.json" >&2
