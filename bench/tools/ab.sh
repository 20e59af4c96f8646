#!/bin/bash
# ab.sh CASE N A_DIR B_DIR: N pairs of sat.sh runs of builds A and B, alternating which goes first;
# each pair's CPU per Check, and the median of B/A. On a noisy machine ±10 % per run is common:
# an effect smaller than that needs many pairs, or a figure that does not depend on CPU speed
# (bytes: rategc.sh, bench/alloc.ts).
set -eu
CASE=$1; N=$2; A=$3; B=$4; HERE=$(dirname "$0")
cpu() { "$HERE/sat.sh" "$1" "$CASE" | grep -o 'cpu_us=[0-9.]*' | cut -d= -f2; }
R=()
for i in $(seq "$N"); do
  if (( i % 2 )); then a=$(cpu "$A"); b=$(cpu "$B"); else b=$(cpu "$B"); a=$(cpu "$A"); fi
  r=$(echo "scale=4; $b/$a" | bc); R+=("$r"); echo "pair $i: A=$a B=$b B/A=$r"
done
printf '%s\n' "${R[@]}" | sort -n | awk '{a[NR]=$1} END {print "median B/A =", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2), "n=" NR}'
