#!/bin/bash
# rategc.sh DIR CASE [LABEL]: a fresh server of DIR's build at 1,000 Check/s (4 s, then 5 s measured)
# with --trace-gc-nvp: the latency percentiles, and over the measured part the median scavenge
# pause, scavenge.parallel (the copying), and KB survived / promoted per scavenge. The bytes are what
# a scavenge must copy, and barely move with CPU contention: the figure to compare builds by when the
# machine is noisy (how 3887290 was chosen). Same setup as sat.sh ($CATALOG, $NODEFLAGS).
set -eu
DIR=$(realpath "$1"); CASE=$2; LABEL=${3:-$DIR}
cd "$(dirname "$0")/../.."
. bench/tools/serve.sh
start_server "$DIR" .tmp/rate-server.log --trace-gc-nvp
taskset -c 1 .tmp/bench/loadgen --target 127.0.0.1:9301 --payloads ".tmp/bench/case-$CASE.json" --duration 4 --warmup 0 --rate 1000 >/dev/null 2>&1
FROM=$(wc -l < .tmp/rate-server.log)
OUT=$(taskset -c 1 .tmp/bench/loadgen --target 127.0.0.1:9301 --payloads ".tmp/bench/case-$CASE.json" --duration 5 --warmup 0 --rate 1000 2>/dev/null)
stop_server
tail -n +"$FROM" .tmp/rate-server.log | LABEL="$LABEL case=$CASE" OUT="$OUT" python3 -c '
import json, os, re, sys
def f(line, key):
    m = re.search(r"(?:^|\s)" + re.escape(key) + r"=([0-9.]+)", line)
    return float(m.group(1)) if m else 0.0
med = lambda xs: sorted(xs)[len(xs) // 2] if xs else 0.0
s = [l for l in sys.stdin if " gc=s " in l]
d = json.loads(os.environ["OUT"])
print("%s p50=%.2f p99=%.2f p999=%.2f scavenges=%d pause=%.2f max=%.2f parallel=%.2f survived_KB=%.0f promoted_KB=%.0f" % (
    os.environ["LABEL"], d["p50"], d["p99"], d["p999"], len(s), med([f(l, "pause") for l in s]), max([f(l, "pause") for l in s] or [0]),
    med([f(l, "scavenge.parallel") for l in s]), med([f(l, "new_space_survived") / 1024 for l in s]), med([f(l, "promoted") / 1024 for l in s])))
'
