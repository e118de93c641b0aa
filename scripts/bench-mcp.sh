#!/usr/bin/env bash
# Benchmark of the MCP gateway (issue 5, "Numbers"): every gateway number
# is measured in the same run as the same server without the gateway.
#
#   1. added latency per tools/call, p50 (and p90/p99), sequential calls:
#      stdio (`bridle mcp wrap`) and streamable HTTP (`bridle mcp serve`),
#      each against the server alone, called in turns (alone, gateway,
#      alone, …) so both see the same moments of a shared machine; the
#      median of REPS runs;
#   2. calls/s through one gateway with WINDOW calls in flight (pipelined on
#      stdio, WINDOW keep-alive connections in one session over HTTP);
#   3. the gateway's RSS every tenth of LOAD_CALLS calls (flat = no growth
#      with the number of calls).
#
# The server is scripts/bench/mcp_server.py, a minimal MCP server (one
# `echo` tool, tens of µs per call), so the gateway's share is not lost in
# server time; the client is scripts/bench/mcp_client.py (raw JSON-RPC).
# Policies: the built-in default set; audit on, as in real use (with its
# SQLite index). Targets: ≤ 200 µs p50 added, ≥ 2000 calls/s, flat memory.
#
# Usage: scripts/bench-mcp.sh [--quick] [--no-build]     (no root needed)
#   --quick     fewer calls (finishes in about a minute)
#   --no-build  use target/release/bridle as it is (or $BRIDLE)
# Environment (defaults: full / --quick):
#   BENCH_CALLS       sequential calls per latency run   5000 / 2000
#   BENCH_REPS        latency runs per path              3 / 3
#   BENCH_LOAD_CALLS  calls of the load runs             100000 / 20000
#   BENCH_WINDOW      calls in flight in the load runs   8 / 8
#   BENCH_KEEP=1      keep the work directory (audit logs, raw results)
#
# NETWORK SAFETY: 127.0.0.1 only; every run is bounded in count and time;
# the EXIT trap stops the servers and the gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BENCH=bench-mcp
# shellcheck source=scripts/bench/common.sh
source scripts/bench/common.sh
bench_args "$@"
if ((QUICK)); then
  CALLS=${BENCH_CALLS:-2000} REPS=${BENCH_REPS:-3} LOAD_CALLS=${BENCH_LOAD_CALLS:-20000}
else
  CALLS=${BENCH_CALLS:-5000} REPS=${BENCH_REPS:-3} LOAD_CALLS=${BENCH_LOAD_CALLS:-100000}
fi
WINDOW=${BENCH_WINDOW:-8}
HOLD=0 # common.sh's connection phase is not used here.

log() { printf '\n== %s\n' "$*" >&2; }
die() { echo "$BENCH: $*" >&2; exit 2; }

PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || die "$PY not found"
bench_build

WORK=$(mktemp -d "/tmp/$BENCH.XXXXXX")
PIDS=()
cleanup() {
  local rc=$? pid
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "$BENCH: kept $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
mkdir -p "$WORK/res"

SERVER=(timeout -k 5 600 "$PY" "$ROOT/scripts/bench/mcp_server.py")
CLIENT=(timeout -k 5 600 "$PY" "$ROOT/scripts/bench/mcp_client.py")
WRAP=("$BRIDLE" mcp wrap --name bench --pins "$WORK/pins" --audit "$WORK/audit-stdio.jsonl" --)

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_port() {
  local port=$1
  for _ in $(seq 200); do
    "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && return 0
    sleep 0.05
  done
  die "nothing listens on 127.0.0.1:$port"
}

# Runs the client; keeps its RESULT line as res/<name>.json.
run() {
  local name=$1 out
  shift
  out=$("${CLIENT[@]}" "$@") || die "$name failed: $out"
  grep -m1 '^RESULT ' <<<"$out" | sed 's/^RESULT //' >"$WORK/res/$name.json"
  [[ -s $WORK/res/$name.json ]] || die "$name produced no result: $out"
}

# A paired run (`mcp_client.py paired`): res/<kind>-direct-<rep>.json and
# res/<kind>-gateway-<rep>.json, and the per-pair difference beside them.
run_paired() {
  local kind=$1 rep=$2
  shift 2
  run "$kind-paired-$rep" paired "$CALLS" "$kind" "$@"
  "$PY" - "$WORK/res" "$kind" "$rep" <<'PY'
import json, sys
from pathlib import Path
res, kind, rep = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
both = json.loads((res / f"{kind}-paired-{rep}.json").read_text())
(res / f"{kind}-direct-{rep}.json").write_text(json.dumps(both["a"]))
(res / f"{kind}-gateway-{rep}.json").write_text(json.dumps({**both["b"], "paired_added_p50_us": both["paired_added_p50_us"]}))
PY
}

log "stdio: $REPS x $CALLS sequential calls, direct and through bridle mcp wrap, in turns"
for rep in $(seq "$REPS"); do
  run_paired stdio "$rep" "${SERVER[@]}" stdio -- "${WRAP[@]}" "${SERVER[@]}" stdio
done
log "stdio: $LOAD_CALLS calls, $WINDOW in flight, through bridle mcp wrap"
run stdio-load load "$LOAD_CALLS" "$WINDOW" stdio "${WRAP[@]}" "${SERVER[@]}" stdio

UPSTREAM=$(free_port)
"${SERVER[@]}" http "$UPSTREAM" &
PIDS+=($!)
wait_port "$UPSTREAM"
LISTEN=$(free_port)
cat >"$WORK/bridle.toml" <<EOF
[audit]
path = "$WORK/audit.jsonl"

[mcp]
listen = "127.0.0.1:$LISTEN"

[[mcp.servers]]
name = "bench"
url = "http://127.0.0.1:$UPSTREAM/mcp"
EOF
"$BRIDLE" mcp serve --config "$WORK/bridle.toml" --pins "$WORK/pins" --audit "$WORK/audit-http.jsonl" 2>"$WORK/serve.log" &
SERVE=$!
PIDS+=("$SERVE")
wait_port "$LISTEN"

log "HTTP: $REPS x $CALLS sequential calls, direct and through bridle mcp serve, in turns"
for rep in $(seq "$REPS"); do
  run_paired http "$rep" "http://127.0.0.1:$UPSTREAM/mcp" -- "http://127.0.0.1:$LISTEN/mcp/bench"
done
log "HTTP: $LOAD_CALLS calls, $WINDOW connections, through bridle mcp serve"
run http-direct-load load "$((LOAD_CALLS / 4))" "$WINDOW" http "http://127.0.0.1:$UPSTREAM/mcp"
run http-load load "$LOAD_CALLS" "$WINDOW" http "http://127.0.0.1:$LISTEN/mcp/bench" "$SERVE"

"$PY" "$ROOT/scripts/bench/mcp_summary.py" "$WORK/res" "$CALLS" "$REPS"
