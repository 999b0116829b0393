#!/bin/bash
# instr.sh [--build DIR] [FLOWS] [udp|tcp]: instructions per packet of the gateway step
# (`ctgate-perf step`, established flows, SNAT), counted by callgrind: the same count for
# the same code whatever else the machine does, where a timing on a shared VM moves by
# 10-30% from one hour to the next. Prints one line:
#   step_instr   instructions per packet of `GatewayStep::process_burst`, and of its
#                three passes: ingress (parse, checks, route), track (the tracker's
#                burst), egress (policy, NAT rewrite, route, MACs)
# Two runs (2 s and 5 s) are counted and subtracted: what remains is the steady packets'
# own cost, without the warm-up (each flow created and answered) or the setup.
#
# The binary is built with rustix's libc backend into its own target directory (default
# /tmp/tgt-instr): rustix's own vDSO lookup reads memory valgrind does not map, and the
# run dies with SIGSEGV. --build DIR reuses or builds DIR instead. Compare two trees by
# running this in each; a run takes about a minute at 1,000 flows, a few at 1,000,000.
set -eu
TGT=/tmp/tgt-instr
if [ "${1:-}" = "--build" ]; then
    TGT=$2
    shift 2
fi
FLOWS=${1:-1000}
PROTO=${2:-udp}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
command -v valgrind > /dev/null || { echo "instr.sh: valgrind is not installed" >&2; exit 1; }
(cd "$ROOT" && cargo build --release -q -p ctgate-perf --features rustix/use-libc --target-dir "$TGT")
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# One callgrind run of SECS seconds: prints "packets step ingress track egress" (totals).
run() {
    valgrind --tool=callgrind --callgrind-out-file="$OUT/cg$1" \
        --toggle-collect='*GatewayStep*process_burst*' \
        "$TGT/release/ctgate-perf" step --flows "$FLOWS" --proto "$PROTO" --seconds "$1" \
        > "$OUT/run$1" 2> "$OUT/vg$1" || { tail -n 20 "$OUT/vg$1" >&2; exit 1; }
    local line fwd drop
    line=$(grep '^bench=step' "$OUT/run$1") || { echo "instr.sh: the run printed no result" >&2; exit 1; }
    fwd=$(echo "$line" | grep -o 'forwarded=[0-9]*' | cut -d= -f2)
    drop=$(echo "$line" | grep -o 'dropped=[0-9]*' | cut -d= -f2)
    callgrind_annotate --inclusive=yes "$OUT/cg$1" 2> /dev/null | awk -v pk=$((fwd + drop)) '
      function n(s) { gsub(",", "", s); return s + 0 }
      /GatewayStep as ctgate::pipeline::PacketStep>::process_burst/ && !t { t = n($1) }
      /WorkerState>::ingress_pass \[/ && !i { i = n($1) }
      /gateway::track \[/ && !k { k = n($1) }
      /WorkerState>::egress_pass \[/ && !e { e = n($1) }
      END { print pk, t, i, k, e }'
}
A=$(run 2)
B=$(run 5)
echo "$A $B" | awk -v f="$FLOWS" -v p="$PROTO" '{
    pk = $6 - $1
    if (pk <= 0 || !$7) { print "instr.sh: no steady packets counted" > "/dev/stderr"; exit 1 }
    printf "flows=%d proto=%s packets=%d step_instr=%.1f ingress=%.1f track=%.1f egress=%.1f\n",
      f, p, pk, ($7 - $2) / pk, ($8 - $3) / pk, ($9 - $4) / pk, ($10 - $5) / pk
}'
