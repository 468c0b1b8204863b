#!/usr/bin/env bash
# Three herald nodes on one Redis, with nginx in front, all on loopback:
#
#   deploy/cluster/run.sh            # herald from $PATH, or HERALD=./target/release/herald
#   curl -N http://127.0.0.1:8080/events/news        # through nginx, any node
#   curl -d hi http://127.0.0.1:8080/publish/news
#   curl http://127.0.0.1:8081/metrics               # one node's metrics
#
# Ctrl-C (or SIGTERM) stops everything it started. Needs redis-server and
# nginx (Debian: apt-get install redis-server nginx-light). State lives in
# $CLUSTER_DIR (default: a fresh directory under /tmp).
#
# Ports: CLUSTER_PORT (nginx, 8080), NODE_PORTS ("8081 8082 8083"),
# REDIS_PORT (6390). Extra herald flags: HERALD_ARGS.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
herald="${HERALD:-herald}"
port="${CLUSTER_PORT:-8080}"
read -r -a nodes <<< "${NODE_PORTS:-8081 8082 8083}"
redis_port="${REDIS_PORT:-6390}"
dir="${CLUSTER_DIR:-$(mktemp -d /tmp/herald-cluster.XXXXXX)}"
mkdir -p "$dir/redis" "$dir/nginx/tmp"

pids=()
stop() {
  trap - EXIT INT TERM
  echo "cluster: stopping"
  # Each process this script started, by its pid.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 0' INT TERM

wait_for() { # wait_for PORT NAME
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "cluster: $2 did not open port $1" >&2
  exit 1
}

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir/redis" \
  --appendonly yes --save '' >"$dir/redis.log" 2>&1 &
pids+=($!)
wait_for "$redis_port" redis-server

for node in "${nodes[@]}"; do
  # shellcheck disable=SC2086 # HERALD_ARGS is a list of flags
  "$herald" --listen "127.0.0.1:$node" --redis "redis://127.0.0.1:$redis_port/0" \
    ${HERALD_ARGS:-} >"$dir/herald-$node.log" 2>&1 &
  pids+=($!)
done
for node in "${nodes[@]}"; do wait_for "$node" "herald on $node"; done

# The nginx config with this run's ports.
sed -e "s/127.0.0.1:8080/127.0.0.1:$port/" \
    -e "s/127.0.0.1:8081/127.0.0.1:${nodes[0]}/" \
    -e "s/127.0.0.1:8082/127.0.0.1:${nodes[1]}/" \
    -e "s/127.0.0.1:8083/127.0.0.1:${nodes[2]}/" \
    "$here/nginx.conf" >"$dir/nginx/nginx.conf"
nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -e "$dir/nginx/nginx-error.log" &
pids+=($!)
wait_for "$port" nginx

echo "cluster: http://127.0.0.1:$port (nodes ${nodes[*]}, redis $redis_port, logs in $dir)"
wait -n "${pids[@]}" || true
echo "cluster: a process exited; see the logs in $dir" >&2
