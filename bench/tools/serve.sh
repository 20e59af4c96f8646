# Sourced by sat.sh and rategc.sh (from the repository root): redis-server on core 1 (port 6391) and
# DIR's build serving $CATALOG (bench/catalog.yaml) on core 0, gRPC 127.0.0.1:9301; extra node
# flags as arguments after DIR and LOG, then $NODEFLAGS.
start_server() {
  local dir=$1 log=$2
  shift 2
  redis-server --port 6391 --save '' --appendonly no >/dev/null 2>&1 &
  REDIS_PID=$!
  taskset -a -p -c 1 "$REDIS_PID" >/dev/null
  sleep 0.3
  # shellcheck disable=SC2086
  taskset -c 0 node "$@" ${NODEFLAGS:-} "$dir/dist/cli/main.js" serve --config "${CATALOG:-bench/catalog.yaml}" \
    --grpc-address 127.0.0.1:9301 --admin-address 127.0.0.1:9391 --redis-url redis://127.0.0.1:6391 > "$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q '"serving"' "$log" && return 0; sleep 0.1; done
  echo "the server did not start: see $log" >&2
  return 1
}

stop_server() {
  kill -INT "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true
}
