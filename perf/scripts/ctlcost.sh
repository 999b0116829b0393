#!/bin/bash
# ctlcost.sh BIN [udp|tcp]: one connection-rate run (`BIN datapath --new-flows --proto P
# --seconds 5 --warmup 3`) that also reads the `schedstat` run time of the process's
# threads over two seconds of the measurement window, and prints one line: the run's
# cps, worker_busy, gen_cpu, refusals and p50 latency, then
#   ctl_ns_per_conn  the control lcore's (the main thread's) CPU time per connection created
#   gen_share        the generator thread's (dp-gen) share of its CPU (CPU 0)
# BIN is a ctgate-perf binary; interleave two binaries' runs to compare them
# (perf/RESULTS.md, sessions 12 and 13).
set -u
BIN=$1
P=${2:-udp}
OUT=$(mktemp)
"$BIN" datapath --new-flows --proto "$P" --seconds 5 --warmup 3 --file-prefix ctlcost > "$OUT" 2>&1 &
RUN=$!
sleep 4.5
# The run's process: the binary itself (no wrapper in between).
PID=$RUN
snap() { for t in /proc/$PID/task/*; do echo "$(basename "$t") $(cat "$t/comm") $(cut -d' ' -f1 "$t/schedstat")"; done; }
A=$(snap)
sleep 2
B=$(snap)
wait $RUN
CPS=$(grep -o ' cps=[0-9]*' "$OUT" | cut -d= -f2)
L=$(grep -o 'cps=[0-9]*\|worker_busy=[0-9.]*\|gen_cpu=[0-9.]*\|refused_max_conns=[0-9]*\|p50_us=[0-9.]*' "$OUT" | tr '\n' ' ')
rm -f "$OUT"
if [ -z "$CPS" ]; then
    echo "ctlcost.sh: the run printed no cps" >&2
    exit 1
fi
COMM=$(basename "$BIN" | cut -c1-15)
join <(echo "$A" | sort) <(echo "$B" | sort) | awk -v cps="$CPS" -v l="$L" -v b="$(basename "$BIN")" -v comm="$COMM" '
  { d = $5 - $3; if ($2 == comm && d > m) m = d; if ($2 == "dp-gen") g = d }
  END { printf "%s %s ctl_ns_per_conn=%.1f gen_share=%.2f\n", b, l, m / (cps * 2), g / 2e9 }'
