#!/usr/bin/env bash
# Soak test: mixed load with reconnect and channel churn against the release
# binary, sampling the server's RSS and open fds into a CSV; fails if either
# keeps growing or if any event is lost silently. Not part of `cargo test`.
#
#   scripts/soak.sh            # 30 minutes
#   scripts/soak.sh 5m         # any duration: 90s, 5m, 1h
#   SOAK_OUT=dir scripts/soak.sh 10m
#
# Writes $SOAK_OUT (default target/soak)/soak.csv, summary.json, server.log;
# plot it with `python3 scripts/soak_plot.py target/soak/soak.csv docs/soak.png`.
# Load knobs (passed to scripts/soak_load.py): SOAK_SUBSCRIBERS (40),
# SOAK_RATE (events/s per stable channel, 20), SOAK_CHURN (new channels/s, 50).
set -euo pipefail

cd "$(dirname "$0")/.."
duration=${1:-30m}
case "$duration" in
  *h) seconds=$(( ${duration%h} * 3600 )) ;;
  *m) seconds=$(( ${duration%m} * 60 )) ;;
  *s) seconds=${duration%s} ;;
  *) seconds=$duration ;;
esac
out=${SOAK_OUT:-target/soak}
mkdir -p "$out"

cargo build --release --bin herald
bin=target/release/herald

# Short TTL so channel churn is reaped during the run; a small stream buffer
# so slow readers exercise the catch-up path.
"$bin" --listen 127.0.0.1:0 --channel-ttl 5s --max-channels 100000 \
  --stream-buffer 64 --heartbeat 2s --retry 500ms 2>"$out/server.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT

addr=
for _ in $(seq 1 100); do
  addr=$(grep -o 'listening on http://[0-9.:]*' "$out/server.log" | head -1 | sed 's|.*http://||') || true
  [ -n "$addr" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$out/server.log"; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "server did not start"; cat "$out/server.log"; exit 1; }
echo "soak: herald pid $server on $addr for ${seconds}s; samples in $out/soak.csv"

status=0
python3 scripts/soak_load.py --url "http://$addr" --pid "$server" --duration "$seconds" \
  --csv "$out/soak.csv" --summary "$out/summary.json" \
  --subscribers "${SOAK_SUBSCRIBERS:-40}" --rate "${SOAK_RATE:-20}" \
  --churn "${SOAK_CHURN:-50}" || status=$?

# A clean shutdown is part of the test: SIGTERM, exit 0 within the grace.
kill -TERM "$server"
if ! wait "$server"; then
  echo "soak: server did not exit cleanly"
  status=1
fi
trap - EXIT
if [ "$status" -eq 0 ]; then echo "soak: PASS"; else echo "soak: FAIL (see $out/summary.json)"; fi
exit "$status"
