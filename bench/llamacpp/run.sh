#!/usr/bin/env bash
# Side-by-side benchmark of cmoe and llama.cpp (node-llama-cpp's prebuilt CPU binary) on the same
# weights: converts MODEL to GGUF (cmoe gguf), then runs `cmoe bench-decode` and the llama.cpp
# script in turns, ROUNDS times, and prints one table (medians over all runs) with greedy parity.
# Not a CI test. Usage:
#   bench/llamacpp/run.sh MODEL_DIR [TYPES=f32,f16] [ROUNDS=2]
# Environment: THREADS (2), PROMPT (128 tokens), TOKENS (64 generated), REPEATS (3 per run), WORK (a temp dir).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
MODEL="$(cd "${1:?usage: run.sh MODEL_DIR [TYPES] [ROUNDS]}" && pwd)"
TYPES="${2:-f32,f16}"
ROUNDS="${3:-2}"
THREADS="${THREADS:-2}"
PROMPT="${PROMPT:-128}"
TOKENS="${TOKENS:-64}"
REPEATS="${REPEATS:-3}"
WORK="${WORK:-$(mktemp -d -t cmoe-llamacpp-XXXXXX)}"
TEXT="The jury said it did find that the court was well operated and that the city had done its work. \
It recommended that the new laws be studied and that the election be held again in the fall."

if [ ! -d "$HERE/node_modules/node-llama-cpp" ]; then
  # the pinned versions from package-lock.json; --ignore-scripts: nothing is downloaded or built
  (cd "$HERE" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund) >&2
fi
# one engine thread count for both; OpenMP and MKL pools as well, so neither side oversubscribes
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
export CMOE_JAVA_OPTS="${CMOE_JAVA_OPTS:--Xmx4g}"

IFS=, read -r -a types <<< "$TYPES"
for t in "${types[@]}"; do
  [ -f "$WORK/model-$t.gguf" ] || "$ROOT/cmoe" gguf "$MODEL" --type "$t" --out "$WORK/model-$t.gguf"
done
echo "machine: $(nproc --all) cores, $(uptime)" > "$WORK/load.txt"
for r in $(seq 1 "$ROUNDS"); do
  "$ROOT/cmoe" bench-decode --model "$MODEL" --text "$TEXT" --prompt "$PROMPT" --tokens "$TOKENS" \
      --repeats "$REPEATS" --threads "$THREADS" --json "$WORK/ours-$r.json"
  for t in "${types[@]}"; do
    node "$HERE/llamacpp-decode.mjs" --gguf "$WORK/model-$t.gguf" --ours "$WORK/ours-$r.json" --text "$TEXT" \
        --threads "$THREADS" --repeats "$REPEATS" --out "$WORK/llama-$t-$r.json"
  done
  echo "after round $r: $(uptime)" >> "$WORK/load.txt"
done
node "$HERE/table.mjs" "$WORK" "$MODEL" "$TYPES" "$ROUNDS" "$THREADS"
cat "$WORK/load.txt"
