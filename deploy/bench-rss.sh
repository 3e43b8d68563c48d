#!/usr/bin/env bash
# Resident memory of a carved model served on one node against a cluster head with one expert
# worker (all on 127.0.0.1): what docs/PERFORMANCE.md reports for the load spec (a head holds no
# routed expert). Each server is started, waited for (health SERVING), sent one generation, then
# its VmRSS and peak VmHWM are read from /proc and it is stopped.
#
#   deploy/bench-rss.sh MODEL_DIR        e.g. a `cmoe synth --carved S2A2E16` checkpoint
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="${1:?usage: deploy/bench-rss.sh MODEL_DIR}"
CMOE="$ROOT/cmoe"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/cmoe-rss-XXXXXX")"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

rss() { # rss PID: "VmRSS VmHWM" in MiB
  awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {printf "%.0f %.0f", r/1024, h/1024}' "/proc/$1/status"
}
serving() { # serving PORT
  "$CMOE" health --server "127.0.0.1:$1" --wait 600 >/dev/null
  "$CMOE" client --server "127.0.0.1:$1" --max-new-tokens 8 --ignore-eos "The jury said" >/dev/null 2>&1
}

"$CMOE" info "$MODEL" | grep -E "^(parameters|stored dtype|carved|active)" || true

"$CMOE" serve --model "$MODEL" --port 50181 --metrics-port -1 >"$RUN/single.log" 2>&1 &
SINGLE=$!; PIDS+=("$SINGLE")
serving 50181
read -r S_RSS S_HWM <<<"$(rss "$SINGLE")"
kill "$SINGLE"; wait "$SINGLE" 2>/dev/null || true

"$ROOT/deploy/local-cluster.sh" 1 --model "$MODEL" --port 50182 --metrics-port 9482 --cluster-port 25720 \
    --run-dir "$RUN/cluster" --wait 600 >"$RUN/cluster.log" 2>&1 &
CLUSTER=$!; PIDS+=("$CLUSTER")
for _ in $(seq 1 600); do [ -s "$RUN/cluster/pids" ] && [ "$(wc -l <"$RUN/cluster/pids")" -ge 2 ] && break; sleep 1; done
serving 50182
HEAD=$(awk 'NR==1 {print $1}' "$RUN/cluster/pids"); WORKER=$(awk 'NR==2 {print $1}' "$RUN/cluster/pids")
read -r H_RSS H_HWM <<<"$(rss "$HEAD")"
read -r W_RSS W_HWM <<<"$(rss "$WORKER")"

printf '%-28s %10s %10s\n' "process" "RSS MiB" "peak MiB"
printf '%-28s %10s %10s\n' "single node (serve)" "$S_RSS" "$S_HWM"
printf '%-28s %10s %10s\n' "cluster head" "$H_RSS" "$H_HWM"
printf '%-28s %10s %10s\n' "expert worker (all experts)" "$W_RSS" "$W_HWM"
echo "logs: $RUN"
