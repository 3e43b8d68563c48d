#!/usr/bin/env bash
# Resident memory of a carved model served on one node against a cluster head with one expert
# worker (all on 127.0.0.1): what docs/PERFORMANCE.md reports for the load spec (a head holds no
# routed expert). Each server is started, waited for (health SERVING), sent one generation, then
# its VmRSS and peak VmHWM are read from /proc and it is stopped.
#
#   deploy/bench-rss.sh MODEL_DIR        e.g. a `cmoe synth --carved S2A2E16` checkpoint
#
# It also times batch-1 decode through gRPC on each: a 4-token and a 20-token generation of the
# same prompt, and 16 / (difference of their times) tokens/s, so prefill drops out.
# CMOE_LAUNCHER picks the launcher (default ./cmoe), BENCH_RSS_WAIT the seconds to wait for a
# server to load (default 600; a 7B model takes minutes on a busy 2-core machine).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="${1:?usage: deploy/bench-rss.sh MODEL_DIR}"
CMOE="${CMOE_LAUNCHER:-$ROOT/cmoe}"
WAIT="${BENCH_RSS_WAIT:-600}"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/cmoe-rss-XXXXXX")"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

rss() { # rss PID: "VmRSS VmHWM" in MiB
  awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {printf "%.0f %.0f", r/1024, h/1024}' "/proc/$1/status"
}
serving() { # serving PORT
  "$CMOE" health --server "127.0.0.1:$1" --wait "$WAIT" >/dev/null
  "$CMOE" client --server "127.0.0.1:$1" --max-new-tokens 8 --ignore-eos "The jury said" >/dev/null 2>&1
}
generate() { # generate PORT TOKENS: seconds for one greedy generation of TOKENS tokens
  local t0 t1
  t0=$(date +%s.%N)
  "$CMOE" client --server "127.0.0.1:$1" --max-new-tokens "$2" --temperature 0 --ignore-eos "The jury said" \
      >/dev/null 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
decode() { # decode PORT: batch-1 decode tokens/s from a 4- and a 20-token generation
  local short long
  short=$(generate "$1" 4)
  long=$(generate "$1" 20)
  printf '%.2f' "$(echo "16 / ($long - $short)" | bc -l)"
}

"$CMOE" info "$MODEL" | grep -E "^(parameters|stored dtype|carved|active)" || true

"$CMOE" serve --model "$MODEL" --port 50181 --metrics-port -1 >"$RUN/single.log" 2>&1 &
SINGLE=$!; PIDS+=("$SINGLE")
serving 50181
S_TPS=$(decode 50181)
read -r S_RSS S_HWM <<<"$(rss "$SINGLE")"
kill "$SINGLE"; wait "$SINGLE" 2>/dev/null || true

"$ROOT/deploy/local-cluster.sh" 1 --model "$MODEL" --port 50182 --metrics-port 9482 --cluster-port 25720 \
    --run-dir "$RUN/cluster" --wait "$WAIT" >"$RUN/cluster.log" 2>&1 &
CLUSTER=$!; PIDS+=("$CLUSTER")
for _ in $(seq 1 "$WAIT"); do [ -s "$RUN/cluster/pids" ] && [ "$(wc -l <"$RUN/cluster/pids")" -ge 2 ] && break; sleep 1; done
serving 50182
HEAD=$(awk 'NR==1 {print $1}' "$RUN/cluster/pids"); WORKER=$(awk 'NR==2 {print $1}' "$RUN/cluster/pids")
C_TPS=$(decode 50182)
read -r H_RSS H_HWM <<<"$(rss "$HEAD")"
read -r W_RSS W_HWM <<<"$(rss "$WORKER")"

printf '%-28s %10s %10s %14s\n' "process" "RSS MiB" "peak MiB" "decode tok/s"
printf '%-28s %10s %10s %14s\n' "single node (serve)" "$S_RSS" "$S_HWM" "$S_TPS"
printf '%-28s %10s %10s %14s\n' "cluster head" "$H_RSS" "$H_HWM" "$C_TPS"
printf '%-28s %10s %10s %14s\n' "expert worker (all experts)" "$W_RSS" "$W_HWM" "(the head's)"
echo "logs: $RUN"
