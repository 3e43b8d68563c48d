#!/usr/bin/env bash
# The prepared GPU check: on a CUDA machine, serve a carved model's routed experts on each GPU and
# compare with the in-process CPU forward (logits of a prompt, greedy tokens, decode speed), in f32
# and bf16; with two or more GPUs, also a cluster head whose --devices spreads the experts over
# cuda:0 and cuda:1, whose greedy text must equal in-process generation.
#
#   CMOE_LIBTORCH=/opt/libtorch scripts/gpu-check.sh [CARVED_MODEL]
#
# Needs a JDK >= 21 (the launcher finds one), the NVIDIA driver, and a libtorch of the PyTorch
# version this build's JNI is compiled against, CUDA flavour: the unpacked
# libtorch-cxx11-abi-shared-with-deps-2.7.1+cu128.zip from download.pytorch.org, or the torch/lib of
# a `pip install torch==2.7.1 --index-url https://download.pytorch.org/whl/cu128`. `cmoe` checks the
# folder's version and flavour before the engine loads (see docs/ARCHITECTURE.md, GPU workers).
# Without CARVED_MODEL it carves the shipped model (S2A2E16, seconds). Exit 0 only if every check
# passes. Nothing here runs in CI: the build ships CPU natives and the tests run without a GPU.
# DRY_RUN=1 runs every step on the CPU instead (no driver, no CMOE_LIBTORCH needed; the head
# step gets one cpu device), to check the script itself on a machine without a GPU.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CMOE="$ROOT/cmoe"
OUT="${OUT:-$(mktemp -d /tmp/cmoe-gpu-check.XXXXXX)}"
TOKENS="${TOKENS:-32}"

die() { echo "gpu-check: $*" >&2; exit 2; }
if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "gpu-check: DRY_RUN=1: every step on the CPU"
  GPUS=2
  dev() { echo cpu; }
  head_devices=cpu
else
  [ -n "${CMOE_LIBTORCH:-}" ] || die "set CMOE_LIBTORCH to a libtorch 2.7.1+cu128 folder (see the header of $0)"
  command -v nvidia-smi >/dev/null || die "no nvidia-smi: this machine has no NVIDIA driver"
  nvidia-smi --query-gpu=index,name,memory.total,memory.used,driver_version --format=csv || die "nvidia-smi failed"
  GPUS="$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)"
  [ "$GPUS" -ge 1 ] || die "nvidia-smi lists no GPU"
  dev() { echo "cuda:$1"; }
  head_devices=cuda:0,cuda:1
fi

MODEL="${1:-}"
if [ -z "$MODEL" ]; then
  MODEL="$OUT/brown-llama-S2A2E16"
  "$CMOE" carve --model "$ROOT/models/brown-llama" --out "$MODEL" --shared 2 --active 2 --experts 16 \
    > "$OUT/carve.log" 2>&1 || { tail -20 "$OUT/carve.log"; die "carving the shipped model failed"; }
fi

failed=0
summary=()
check() { # NAME ARGS...: runs one cmoe command, keeps its output, records PASS/FAIL
  local name="$1"; shift
  echo; echo "== $name"
  if "$@" 2>&1 | tee "$OUT/$name.log"; then summary+=("PASS  $name"); else summary+=("FAIL  $name"); failed=1; fi
}

for ((g = 0; g < GPUS && g < 2; g++)); do
  for dtype in f32 bf16; do
    check "device$g-$dtype" "$CMOE" gpu-check --model "$MODEL" --device "$(dev "$g")" --dtype "$dtype" \
      --tokens "$TOKENS"
  done
done

if [ "$GPUS" -ge 2 ]; then
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  cport="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  prompt="The old man said that the county had"
  "$CMOE" serve --model "$MODEL" --port "$port" --role head --cluster-seed "127.0.0.1:$cport" \
    --devices "$head_devices" --min-devices "$(echo "$head_devices" | tr , '\n' | wc -l)" > "$OUT/head.log" 2>&1 &
  head_pid=$!
  trap 'kill "$head_pid" 2>/dev/null' EXIT
  echo; echo "== two-gpu-head"
  if "$CMOE" health --server "127.0.0.1:$port" --wait 180 --quiet; then
    "$CMOE" client --server "127.0.0.1:$port" --max-new-tokens "$TOKENS" --temperature 0 "$prompt" \
      > "$OUT/served.txt" 2> "$OUT/client.err"
    "$CMOE" generate --model "$MODEL" --max-new-tokens "$TOKENS" --temperature 0 "$prompt" \
      > "$OUT/in-process.txt" 2> "$OUT/generate.err"
    grep -i "placed\|device" "$OUT/head.log" | tail -5
    # generate prints the prompt before its text, the client only the text
    if [ -s "$OUT/served.txt" ] && [ "$prompt$(cat "$OUT/served.txt")" = "$(cat "$OUT/in-process.txt")" ]; then
      summary+=("PASS  two-gpu-head (experts over $head_devices; greedy text equals in-process)")
    else
      summary+=("FAIL  two-gpu-head (see $OUT/served.txt, $OUT/in-process.txt, $OUT/head.log)"); failed=1
    fi
  else
    tail -20 "$OUT/head.log"
    summary+=("FAIL  two-gpu-head (not SERVING within 180 s; $OUT/head.log)"); failed=1
  fi
  kill "$head_pid" 2>/dev/null; wait "$head_pid" 2>/dev/null
fi

echo; echo "== summary (logs in $OUT)"
printf '%s\n' "${summary[@]}"
exit "$failed"
