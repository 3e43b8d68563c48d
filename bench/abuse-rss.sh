#!/usr/bin/env bash
# Memory under abuse: starts `./cmoe serve` on a free 127.0.0.1 port, measures its resident memory
# when idle (after one ordinary request), sends a burst of huge prompts (bench/AbuseClient.java),
# and measures it again right after the burst and after SETTLE seconds. The server must end within
# 10% of its idle RSS. Usage: bench/abuse-rss.sh [MODEL] [REQUESTS] [PROMPT_BYTES] [CONCURRENCY] [SETTLE]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODEL="${1:-models/brown-llama}"
REQUESTS="${2:-40}"
BYTES="${3:-3900000}"
CONCURRENCY="${4:-4}"
SETTLE="${5:-20}"
./cmoe --help >/dev/null # builds the distribution when it is missing or stale
JDK="${JAVA_HOME:?set JAVA_HOME to a JDK 21 or newer}"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
TMP="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$TMP"' EXIT
./cmoe serve --model "$MODEL" --port "$PORT" >"$TMP/serve.log" 2>&1 &
PID=$!
rss() { awk '/^VmRSS/ {printf "%.0f", $2/1024}' "/proc/$PID/status"; }
CP="deploy/target/cmoe-deploy-0.1.0-SNAPSHOT.jar:deploy/target/lib/*"
client() { "$JDK/bin/java" -cp "$CP" bench/AbuseClient.java "127.0.0.1:$PORT" "$@"; }
for i in $(seq 1 120); do # at most 60 s for the server to listen
  grep -q "^cmoe serve: " "$TMP/serve.log" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || { cat "$TMP/serve.log"; exit 1; }
  sleep 0.5
done
client 1 32 1 >/dev/null # one ordinary-sized request warms the server up
sleep 5
IDLE="$(rss)"
echo "abuse: idle RSS ${IDLE} MiB (pid $PID, model $MODEL)"
client "$REQUESTS" "$BYTES" "$CONCURRENCY"
AFTER="$(rss)"
sleep "$SETTLE"
SETTLED="$(rss)"
echo "abuse: RSS right after the burst ${AFTER} MiB, ${SETTLE} s later ${SETTLED} MiB"
echo "abuse: the server's log has $(wc -l <"$TMP/serve.log") lines, $(grep -c 'client error' "$TMP/serve.log" || true) of them client-error summaries, $(grep -c '^\s*at ' "$TMP/serve.log" || true) stack frames"
awk -v i="$IDLE" -v s="$SETTLED" 'BEGIN { d = 100 * (s - i) / i; printf "abuse: settled RSS is %+.1f%% of idle: %s\n", d, (d <= 10 ? "within 10%" : "NOT within 10%"); exit (d <= 10 ? 0 : 1) }'
