#!/bin/bash
# sat.sh DIR CASE [LABEL]: CPU µs per Check of DIR's build (DIR/dist/cli/main.js) at saturation.
# serve on core 0 (bench/catalog.yaml, or $CATALOG), redis-server on core 1 (port 6391), the case's
# payloads (.tmp/bench/case-CASE.json, written by any bench/run.ts run) from .tmp/bench/loadgen on
# core 1: 3 s of warm-up, then $DUR s (6) measured; CPU from /proc utime+stime over the Checks
# answered. $NODEFLAGS go to node (e.g. --cpu-prof --cpu-prof-dir=DIR). Figures move with the
# machine: compare builds with ab.sh, not across runs.
set -eu
DIR=$(realpath "$1"); CASE=$2; LABEL=${3:-$DIR}
cd "$(dirname "$0")/../.."
. bench/tools/serve.sh
start_server "$DIR" .tmp/sat-server.log
taskset -c 1 .tmp/bench/loadgen --target 127.0.0.1:9301 --payloads ".tmp/bench/case-$CASE.json" --duration 2 --warmup 1 >/dev/null 2>&1
read -r u s < <(awk '{print $14, $15}' /proc/$SERVER_PID/stat)
OUT=$(taskset -c 1 .tmp/bench/loadgen --target 127.0.0.1:9301 --payloads ".tmp/bench/case-$CASE.json" --duration "${DUR:-6}" --warmup 0 2>/dev/null)
read -r u2 s2 < <(awk '{print $14, $15}' /proc/$SERVER_PID/stat)
OK=$(echo "$OUT" | grep -o '"ok":[0-9]*' | head -1 | cut -d: -f2)
stop_server
echo "$LABEL case=$CASE ok=$OK cpu_us=$(echo "scale=1; ($u2+$s2-$u-$s)*10000/$OK" | bc)"
