#!/usr/bin/env bash
# Starts a CMoE cluster on this machine: one head (`cmoe serve --role head`) and N expert workers
# (`cmoe worker`), all on 127.0.0.1 with distinct ports, waits until the head's gRPC health says
# SERVING (every expert has a live host), and stops them all on Ctrl-C or when this script exits.
#
#   deploy/local-cluster.sh N [options] [-- extra `cmoe serve` flags]
#
# Run `deploy/local-cluster.sh --help` for the options. Logs and the pid list go to a run directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CMOE="${CMOE_LAUNCHER:-$ROOT/cmoe}"

usage() {
  cat <<'EOF'
usage: deploy/local-cluster.sh N [options] [-- extra `cmoe serve` flags]

Starts a head and N expert workers on 127.0.0.1 and keeps them running until Ctrl-C.

  N                        expert workers to start (1 or more)
  --model DIR              carved model directory, shared by all (default: $CMOE_MODEL, else
                           ~/.cache/cmoe/models/brown-llama-S2A2E16, which `./cmoe demo` creates)
  --devices LIST           devices of each worker: cpu, or gpu:0,gpu:1,... (default: cpu)
  --memory-per-device N    bytes each worker device may spend on experts (default: not limited)
  --plan FILE|auto         placement plan for the head; `auto` runs `cmoe plan` over the workers'
                           devices first (default: none, the head places experts itself)
  --port P                 head gRPC port (default: 50051)
  --metrics-port P         head Prometheus port, /metrics (default: 9464)
  --cluster-port P         head's cluster (Artery) port and seed; worker i uses P + i (default: 25520)
  --run-dir DIR            logs and pids (default: a new cmoe-cluster-* directory under $TMPDIR or /tmp)
  --auth-token-file FILE   bearer token the head requires on every call (also used here for the
                           health wait and --check); needed for `cmoe rebalance` and admin calls
  --wait SECONDS           how long to wait for SERVING (default: 300)
  --check                  once SERVING, stream one prompt through `cmoe client`, then stop everything
                           and exit with the client's status
  -h, --help               this text

Each process is `./cmoe ...`: CMOE_JAVA_OPTS sets their JVM options (the launcher's default heap is
-Xmx8g per process). Killing one worker (kill -9 PID, pids are printed) tests failover; the script
keeps the others running and stops everything when the head exits.
EOF
}

die() { echo "local-cluster: $*" >&2; exit 2; }

# ---- arguments ---------------------------------------------------------------------------------
WORKERS=""
MODEL="${CMOE_MODEL:-$HOME/.cache/cmoe/models/brown-llama-S2A2E16}"
DEVICES="cpu"
MEMORY=""
PLAN=""
GRPC_PORT=50051
METRICS_PORT=9464
CLUSTER_PORT=25520
RUN_DIR=""
WAIT=300
CHECK=false
TOKEN_FILE=""
SERVE_EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --model) MODEL="${2:?--model needs a directory}"; shift 2 ;;
    --devices) DEVICES="${2:?--devices needs a list}"; shift 2 ;;
    --memory-per-device) MEMORY="${2:?--memory-per-device needs bytes}"; shift 2 ;;
    --plan) PLAN="${2:?--plan needs a file or auto}"; shift 2 ;;
    --port) GRPC_PORT="${2:?--port needs a number}"; shift 2 ;;
    --metrics-port) METRICS_PORT="${2:?--metrics-port needs a number}"; shift 2 ;;
    --cluster-port) CLUSTER_PORT="${2:?--cluster-port needs a number}"; shift 2 ;;
    --run-dir) RUN_DIR="${2:?--run-dir needs a directory}"; shift 2 ;;
    --wait) WAIT="${2:?--wait needs seconds}"; shift 2 ;;
    --auth-token-file) TOKEN_FILE="${2:?--auth-token-file needs a file}"; shift 2 ;;
    --check) CHECK=true; shift ;;
    --) shift; SERVE_EXTRA=("$@"); break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$WORKERS" ] || die "unexpected argument $1 (N is already $WORKERS)"; WORKERS="$1"; shift ;;
  esac
done

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
[ -n "$WORKERS" ] || { usage >&2; exit 2; }
is_uint "$WORKERS" && [ "$WORKERS" -ge 1 ] || die "N must be a number of workers ≥ 1, got '$WORKERS'"
for p in "$GRPC_PORT" "$METRICS_PORT" "$CLUSTER_PORT"; do
  is_uint "$p" && [ "$p" -ge 1 ] && [ "$p" -le 65535 ] || die "port '$p' is not in 1..65535"
done
[ $((CLUSTER_PORT + WORKERS)) -le 65535 ] || die "--cluster-port $CLUSTER_PORT + $WORKERS workers passes 65535"
is_uint "$WAIT" || die "--wait must be whole seconds, got '$WAIT'"
[ -d "$MODEL" ] || die "model directory $MODEL does not exist (run ./cmoe demo once, or pass --model DIR)"
[ -f "$MODEL/config.json" ] || die "$MODEL has no config.json: not a model directory"
grep -q '"cmoe"' "$MODEL/config.json" || die "$MODEL is a dense model; the cluster hosts carved experts (cmoe carve)"
[ -z "$PLAN" ] || [ "$PLAN" = auto ] || [ -f "$PLAN" ] || die "plan file $PLAN does not exist"
[ -x "$CMOE" ] || die "launcher $CMOE is not executable"

# ---- ports: all distinct, all free ---------------------------------------------------------------
PORTS=("$GRPC_PORT" "$METRICS_PORT")
for ((i = 0; i <= WORKERS; i++)); do PORTS+=($((CLUSTER_PORT + i))); done
if [ "$(printf '%s\n' "${PORTS[@]}" | sort -u | wc -l)" -ne "${#PORTS[@]}" ]; then
  die "ports overlap: gRPC $GRPC_PORT, metrics $METRICS_PORT, cluster $CLUSTER_PORT..$((CLUSTER_PORT + WORKERS))"
fi
for p in "${PORTS[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port $p on 127.0.0.1 is in use (choose others with --port, --metrics-port, --cluster-port)"
  fi
done

# ---- run directory and cleanup -------------------------------------------------------------------
if [ -z "$RUN_DIR" ]; then
  RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/cmoe-cluster-$(date +%Y%m%d-%H%M%S)-XXXX")"
else
  mkdir -p "$RUN_DIR"
fi
RUN_DIR="$(cd "$RUN_DIR" && pwd)"
: > "$RUN_DIR/pids"

NAMES=()
PIDS=()
HEALTH=""
stop_pids() { # stop_pids SECONDS PID...: TERM, then KILL whatever is left after SECONDS
  local seconds="$1" pid i alive
  shift
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < seconds * 10; i++)); do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && return 0
    sleep 0.1
  done
  for pid in "$@"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "local-cluster: pid $pid did not stop within ${seconds}s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}
stop_all() {
  local status=$?
  trap - EXIT INT TERM
  [ -z "$HEALTH" ] || kill "$HEALTH" 2>/dev/null || true
  if [ "${#PIDS[@]}" -gt 0 ]; then
    echo "local-cluster: stopping ${#PIDS[@]} processes..." >&2
    # the head first, so that it does not start re-placing the experts of workers that are going away
    stop_pids 10 "${PIDS[0]}"
    [ "${#PIDS[@]}" -lt 2 ] || stop_pids 10 "${PIDS[@]:1}"
    wait 2>/dev/null || true
  fi
  echo "local-cluster: logs in $RUN_DIR" >&2
  exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# one build before N + 1 launchers would each find the distribution stale
"$CMOE" --version >/dev/null

SEED="127.0.0.1:$CLUSTER_PORT"
CLUSTER=(--cluster-seed "$SEED" --cluster-host 127.0.0.1)

worker_devices() { # worker-3 + gpu:0,gpu:1 -> worker-3/gpu:0,worker-3/gpu:1
  local name="$1" out="" d
  IFS=',' read -r -a list <<< "$DEVICES"
  for d in "${list[@]}"; do out="${out:+$out,}$name/$d"; done
  echo "$out"
}

if [ "$PLAN" = auto ]; then
  ALL=""
  for ((i = 1; i <= WORKERS; i++)); do ALL="${ALL:+$ALL,}$(worker_devices "worker-$i")"; done
  PLAN_ARGS=(plan --model "$MODEL" --devices "$ALL" --out "$RUN_DIR/plan.json")
  [ -z "$MEMORY" ] || PLAN_ARGS+=(--memory-per-device "$MEMORY")
  echo "local-cluster: cmoe ${PLAN_ARGS[*]}" >&2
  "$CMOE" "${PLAN_ARGS[@]}" | tee "$RUN_DIR/plan.txt" >&2
  PLAN="$RUN_DIR/plan.json"
fi

start() { # start NAME ARGS...: runs ./cmoe ARGS in the background, logging to RUN_DIR/NAME.log
  local name="$1"
  shift
  echo "cmoe $*" > "$RUN_DIR/$name.log"
  "$CMOE" "$@" >> "$RUN_DIR/$name.log" 2>&1 &
  NAMES+=("$name")
  PIDS+=("$!")
  echo "$! $name" >> "$RUN_DIR/pids"
  echo "local-cluster: started $name (pid $!), log $RUN_DIR/$name.log" >&2
}

HEAD_ARGS=(serve --role head "${CLUSTER[@]}" --cluster-port "$CLUSTER_PORT" --model "$MODEL"
  --host 127.0.0.1 --port "$GRPC_PORT" --metrics-port "$METRICS_PORT")
[ -z "$PLAN" ] || HEAD_ARGS+=(--plan "$PLAN")
AUTH=()
if [ -n "$TOKEN_FILE" ]; then
  [ -r "$TOKEN_FILE" ] || die "--auth-token-file $TOKEN_FILE is not a readable file"
  AUTH=(--auth-token-file "$TOKEN_FILE")
  HEAD_ARGS+=("${AUTH[@]}")
fi
start head "${HEAD_ARGS[@]}" ${SERVE_EXTRA[@]+"${SERVE_EXTRA[@]}"}
for ((i = 1; i <= WORKERS; i++)); do
  WORKER_ARGS=(worker "${CLUSTER[@]}" --cluster-port $((CLUSTER_PORT + i)) --name "worker-$i"
    --devices "$DEVICES" --model "$MODEL")
  [ -z "$MEMORY" ] || WORKER_ARGS+=(--memory-per-device "$MEMORY")
  start "worker-$i" "${WORKER_ARGS[@]}"
done

# a process that dies while we wait is reported with the end of its log
check_alive() {
  local i
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      local status=0
      wait "${PIDS[$i]}" || status=$?
      echo "local-cluster: ${NAMES[$i]} (pid ${PIDS[$i]}) exited with status $status; last lines of its log:" >&2
      tail -n 20 "$RUN_DIR/${NAMES[$i]}.log" >&2
      return 1
    fi
  done
}

echo "local-cluster: waiting up to ${WAIT}s for the head to report SERVING..." >&2
"$CMOE" health --server "127.0.0.1:$GRPC_PORT" ${AUTH[@]+"${AUTH[@]}"} --wait "$WAIT" --quiet &
HEALTH=$!
while kill -0 "$HEALTH" 2>/dev/null; do
  if ! check_alive; then
    exit 1
  fi
  sleep 1
done
HEALTH_STATUS=0
wait "$HEALTH" || HEALTH_STATUS=$?
HEALTH=""
if [ "$HEALTH_STATUS" -ne 0 ]; then
  echo "local-cluster: the head did not report SERVING within ${WAIT}s:" >&2
  "$CMOE" health --server "127.0.0.1:$GRPC_PORT" ${AUTH[@]+"${AUTH[@]}"} >&2 || true
  exit 1
fi

cat >&2 <<EOF
local-cluster: SERVING
  gRPC      127.0.0.1:$GRPC_PORT   (./cmoe client --server 127.0.0.1:$GRPC_PORT "The jury said")
  metrics   http://127.0.0.1:$METRICS_PORT/metrics
  cluster   seed $SEED, workers on ports $((CLUSTER_PORT + 1))..$((CLUSTER_PORT + WORKERS))
  pids      $(tr '\n' ' ' < "$RUN_DIR/pids")
  logs      $RUN_DIR
EOF

if [ "$CHECK" = true ]; then
  "$CMOE" client --server "127.0.0.1:$GRPC_PORT" ${AUTH[@]+"${AUTH[@]}"} --max-new-tokens 20 "The jury said"
  exit $?
fi

echo "local-cluster: Ctrl-C stops all." >&2
# keep running; a worker may exit (failover tests), the head may not
REPORTED=()
while true; do
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null && [ -z "${REPORTED[$i]:-}" ]; then
      REPORTED[i]=1
      status=0
      wait "${PIDS[$i]}" || status=$?
      if [ "$i" -eq 0 ]; then
        echo "local-cluster: the head exited with status $status; stopping the workers" >&2
        exit 1
      fi
      echo "local-cluster: ${NAMES[$i]} (pid ${PIDS[$i]}) exited with status $status; the head re-places its experts" >&2
    fi
  done
  sleep 1
done
