#!/usr/bin/env bash
# Benchmarks a CMoE cluster whose head and expert workers are separate hosts: each runs in a network
# namespace of its own, joined by veth links to a bridge, with each link shaped by `tc` (tbf for the
# bandwidth, netem for the delay where the kernel has it). The head serves gRPC inside its namespace
# and `cmoe bench` runs there too; first the same load runs against one JVM (no cluster) in the
# root namespace, so the table's ratio compares the two. Every namespace the run made is deleted when
# it ends, however it ends. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for `ip netns`).
#
#   deploy/netns-cluster.sh [options] [-- extra `cmoe bench` flags]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CMOE="${CMOE_LAUNCHER:-$ROOT/cmoe}"

usage() {
  cat <<'EOF'
usage: deploy/netns-cluster.sh [options] [-- extra `cmoe bench` flags]

Starts a head and N expert workers, each in its own network namespace on a bridged 10.78.0.0/24
link, runs `cmoe bench` against one JVM and then against the cluster, prints both tables and the
ratio of output tokens/s, and deletes every namespace it made.

  --model DIR        carved model directory (default: ~/.cache/cmoe/models/brown-llama-S2A2E16,
                     which `./cmoe demo` creates)
  --workers N        expert workers (default: 2)
  --rate RATE        bandwidth of every host's link, tc syntax (default: 10gbit)
  --delay TIME       one-way delay added on every host's link by netem (default: 50us); where the
                     kernel has no netem the run says so and adds none
  --concurrency LIST `cmoe bench --concurrency` (default: 1,8)
  --requests N       requests per load (default: 48)
  --warmup N         untimed requests first, per server (default: 24)
  --input-len N      prompt tokens (default: 32)
  --output-len N     generated tokens (default: 64)
  --skip-single      do not run the one-JVM baseline
  --kill-worker S    then run `cmoe bench --scenario worker-loss` against the cluster: worker-1 is
                     killed (SIGKILL) S seconds into a run of 3·S seconds, after a reference run
                     without the kill; prints its verdict (default: not run)
  --keep-logs DIR    where the processes' logs go (default: a new directory under $TMPDIR or /tmp)
  -h, --help         this text

CMOE_JAVA_OPTS sets every process's JVM options (default here: -Xmx2g).
EOF
}

die() { echo "netns-cluster: $*" >&2; exit 2; }

MODEL="${CMOE_MODEL:-$HOME/.cache/cmoe/models/brown-llama-S2A2E16}"
WORKERS=2
RATE=10gbit
DELAY=50us
CONCURRENCY=1,8
REQUESTS=48
WARMUP=24
INPUT_LEN=32
OUTPUT_LEN=64
SINGLE=true
KILL_AFTER=""
RUN_DIR=""
BENCH_EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --model) MODEL="${2:?--model needs a directory}"; shift 2 ;;
    --workers) WORKERS="${2:?--workers needs a number}"; shift 2 ;;
    --rate) RATE="${2:?--rate needs a tc rate, e.g. 10gbit}"; shift 2 ;;
    --delay) DELAY="${2:?--delay needs a tc time, e.g. 50us}"; shift 2 ;;
    --concurrency) CONCURRENCY="${2:?--concurrency needs a list}"; shift 2 ;;
    --requests) REQUESTS="${2:?--requests needs a number}"; shift 2 ;;
    --warmup) WARMUP="${2:?--warmup needs a number}"; shift 2 ;;
    --input-len) INPUT_LEN="${2:?--input-len needs a number}"; shift 2 ;;
    --output-len) OUTPUT_LEN="${2:?--output-len needs a number}"; shift 2 ;;
    --skip-single) SINGLE=false; shift ;;
    --kill-worker) KILL_AFTER="${2:?--kill-worker needs seconds}"; shift 2 ;;
    --keep-logs) RUN_DIR="${2:?--keep-logs needs a directory}"; shift 2 ;;
    --) shift; BENCH_EXTRA=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
is_uint "$WORKERS" && [ "$WORKERS" -ge 1 ] && [ "$WORKERS" -le 200 ] || die "--workers must be 1..200, got '$WORKERS'"
[ -z "$KILL_AFTER" ] || { is_uint "$KILL_AFTER" && [ "$KILL_AFTER" -ge 1 ]; } \
  || die "--kill-worker takes whole seconds ≥ 1, got '$KILL_AFTER'"
for v in "$REQUESTS" "$WARMUP" "$INPUT_LEN" "$OUTPUT_LEN"; do
  is_uint "$v" || die "--requests, --warmup, --input-len and --output-len take whole numbers, got '$v'"
done
[ -f "$MODEL/config.json" ] || die "$MODEL is not a model directory (run ./cmoe demo once, or pass --model DIR)"
grep -q '"cmoe"' "$MODEL/config.json" || die "$MODEL is a dense model; the cluster hosts carved experts"
[ -x "$CMOE" ] || die "launcher $CMOE is not executable"
command -v ip >/dev/null && command -v tc >/dev/null || die "skipped: needs ip and tc (iproute2)"
[ "$(id -u)" -eq 0 ] || die "skipped: network namespaces need root"

export CMOE_JAVA_OPTS="${CMOE_JAVA_OPTS:--Xmx2g}"
TAG="cmoe$$"
SWITCH="$TAG-sw"
NAMESPACES=()
PIDS=()
if [ -z "$RUN_DIR" ]; then
  RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/cmoe-netns-$(date +%Y%m%d-%H%M%S)-XXXX")"
else
  mkdir -p "$RUN_DIR"
fi

cleanup() {
  local status=$? pid ns i
  trap - EXIT INT TERM
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 200; i++)); do # 20 s for the head and the workers to leave the cluster
    local alive=0
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "netns-cluster: pid $pid did not stop within 20 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
  # deleting a namespace deletes its end of each veth, and so the pair
  for ns in "${NAMESPACES[@]+"${NAMESPACES[@]}"}"; do ip netns del "$ns" 2>/dev/null || true; done
  local left
  left="$(ip netns list 2>/dev/null | grep -c "^$TAG-" || true)"
  [ "$left" -eq 0 ] || echo "netns-cluster: $left namespaces of this run could not be deleted (ip netns list)" >&2
  echo "netns-cluster: logs in $RUN_DIR" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

new_ns() {
  ip netns add "$1" 2>"$RUN_DIR/netns.err" || die "skipped: the kernel refuses network namespaces here: $(cat "$RUN_DIR/netns.err")"
  NAMESPACES+=("$1")
  ip -n "$1" link set lo up
}

# ---- the link: a bridge in a namespace of its own, one veth per host, shaped on both ends ---------
new_ns "$SWITCH"
ip -n "$SWITCH" link add br0 type bridge 2>"$RUN_DIR/netns.err" || die "skipped: no bridge support: $(cat "$RUN_DIR/netns.err")"
ip -n "$SWITCH" link set br0 up
NETEM=true
shape() { # shape NS DEV: rate via tbf, delay via netem above it where the kernel has netem
  local ns="$1" dev="$2"
  if [ "$NETEM" = true ] && ip netns exec "$ns" tc qdisc add dev "$dev" root handle 1: netem delay "$DELAY" \
      2>"$RUN_DIR/tc.err"; then
    ip netns exec "$ns" tc qdisc add dev "$dev" parent 1:1 handle 10: tbf rate "$RATE" burst 256kb latency 10ms
  else
    if [ "$NETEM" = true ]; then
      echo "netns-cluster: this kernel has no netem ($(head -n 1 "$RUN_DIR/tc.err")): links get the bandwidth, no added delay" >&2
      NETEM=false
    fi
    ip netns exec "$ns" tc qdisc add dev "$dev" root tbf rate "$RATE" burst 256kb latency 10ms \
      || die "tc refused a tbf of rate $RATE"
  fi
}
HOSTS=(head)
for ((i = 1; i <= WORKERS; i++)); do HOSTS+=("worker-$i"); done
for i in "${!HOSTS[@]}"; do
  ns="$TAG-${HOSTS[$i]}"
  new_ns "$ns"
  ip link add "$TAG-h$i" type veth peer name "$TAG-s$i"
  ip link set "$TAG-h$i" netns "$ns"
  ip link set "$TAG-s$i" netns "$SWITCH"
  ip -n "$SWITCH" link set "$TAG-s$i" master br0
  ip -n "$SWITCH" link set "$TAG-s$i" up
  ip -n "$ns" addr add "10.78.0.$((i + 1))/24" dev "$TAG-h$i"
  ip -n "$ns" link set "$TAG-h$i" up
  shape "$ns" "$TAG-h$i"   # the host's sending side
  shape "$SWITCH" "$TAG-s$i" # and what the switch sends to it
done
LINK="veth through a bridge, $RATE per host link, $([ "$NETEM" = true ] && echo "$DELAY one-way delay on each end" || echo "no added delay (no netem)")"
echo "netns-cluster: $((WORKERS + 1)) hosts on 10.78.0.0/24: $LINK" >&2

"$CMOE" --version >/dev/null # one build before the launchers below would each find it stale
BENCH=(bench --warmup "$WARMUP" --concurrency "$CONCURRENCY" --requests "$REQUESTS" --input-len "$INPUT_LEN"
  --output-len "$OUTPUT_LEN" --model "$MODEL" ${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"})

tokens_per_s() { # the output tok/s of each load, from a bench log
  sed -n 's/.*calls OK.* \([0-9.]*\) output tok\/s.*/\1/p' "$1" | tr '\n' ' '
}

if [ "$SINGLE" = true ]; then
  echo "netns-cluster: one JVM (cmoe bench serves the model itself)" >&2
  "$CMOE" "${BENCH[@]}" --out "$RUN_DIR/single" > "$RUN_DIR/bench-single.log" 2>&1 \
    || { tail -n 20 "$RUN_DIR/bench-single.log" >&2; die "the one-JVM bench failed"; }
fi

start() { # start NAME ARGS...: ./cmoe ARGS inside NAME's namespace, in the background
  local name="$1"
  shift
  echo "cmoe $*" > "$RUN_DIR/$name.log"
  ip netns exec "$TAG-$name" "$CMOE" "$@" >> "$RUN_DIR/$name.log" 2>&1 &
  PIDS+=("$!")
}
SEED="10.78.0.1:25520"
start head serve --role head --cluster-seed "$SEED" --cluster-host 10.78.0.1 --cluster-port 25520 --model "$MODEL" \
  --host 127.0.0.1 --port 50051 --metrics-port 9464 --min-devices "$WORKERS"
for ((i = 1; i <= WORKERS; i++)); do
  start "worker-$i" worker --cluster-seed "$SEED" --cluster-host "10.78.0.$((i + 1))" --cluster-port 25520 \
    --name "worker-$i" --devices cpu --model "$MODEL"
done
echo "netns-cluster: waiting for the head to report SERVING..." >&2
ip netns exec "$TAG-head" "$CMOE" health --server 127.0.0.1:50051 --wait 300 --quiet \
  || { tail -n 20 "$RUN_DIR/head.log" >&2; die "the head did not report SERVING within 300 s"; }
echo "netns-cluster: the cluster serves; benchmarking it from the head's namespace" >&2
ip netns exec "$TAG-head" "$CMOE" "${BENCH[@]}" --target 127.0.0.1:50051 --metrics 127.0.0.1:9464 \
  --out "$RUN_DIR/cluster" > "$RUN_DIR/bench-cluster.log" 2>&1 \
  || { tail -n 20 "$RUN_DIR/bench-cluster.log" >&2; die "the cluster bench failed"; }

echo "== $((WORKERS + 1)) hosts ($LINK), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$SINGLE" = true ]; then
  echo "-- one JVM"
  grep -E "^-- concurrency|TPOT " "$RUN_DIR/bench-single.log" || true
fi
echo "-- head + $WORKERS workers over the links"
grep -E "^-- concurrency|TPOT " "$RUN_DIR/bench-cluster.log" || true
if [ "$SINGLE" = true ]; then
  read -r -a one <<< "$(tokens_per_s "$RUN_DIR/bench-single.log")"
  read -r -a many <<< "$(tokens_per_s "$RUN_DIR/bench-cluster.log")"
  IFS=',' read -r -a levels <<< "$CONCURRENCY"
  for i in "${!levels[@]}"; do
    [ -n "${one[$i]:-}" ] && [ -n "${many[$i]:-}" ] || continue
    awk -v c="${levels[$i]}" -v a="${one[$i]}" -v b="${many[$i]}" \
      'BEGIN { printf "concurrency %s: %.1f output tok/s in one JVM, %.1f on the cluster: %.2fx\n", c, a, b, b / a }'
  done
fi
if [ -n "$KILL_AFTER" ]; then
  echo "-- worker-loss: worker-1 (pid ${PIDS[1]}) killed ${KILL_AFTER} s into $((3 * KILL_AFTER)) s of load"
  ip netns exec "$TAG-head" "$CMOE" bench --target 127.0.0.1:50051 --metrics 127.0.0.1:9464 --model "$MODEL" \
    --scenario worker-loss --kill-pid "${PIDS[1]}" --kill-after "${KILL_AFTER}s" --duration "$((3 * KILL_AFTER))s" \
    --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" --out "$RUN_DIR/worker-loss" > "$RUN_DIR/bench-loss.log" 2>&1 \
    || { tail -n 20 "$RUN_DIR/bench-loss.log" >&2; die "the worker-loss scenario failed"; }
  grep -E "^VERDICT|^-- " "$RUN_DIR/bench-loss.log" || true
fi
