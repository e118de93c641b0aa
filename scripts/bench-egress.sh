#!/usr/bin/env bash
# Whole-system benchmark of `bridle run` egress (issue 3, "Numbers"): every
# guarded number is measured in the same run as its unguarded baseline.
#
#   1. TCP connect() syscall latency (guarded: the kernel handshake with the
#      proxy's listener, before the proxy accepts) and time to first byte
#      (connect + 1-byte request/response: adds the proxy's accept,
#      detection, decision, upstream connect and relay), unguarded vs
#      `bridle run`;
#   2. one TCP stream up and down, direct vs through the proxy;
#   1 and 2 also through the floor: a minimal splice relay
#      (scripts/bench/relay.c) with no redirection, policy or audit, i.e.
#      what one more process and two more loopback hops cost here;
#   3. Bridle's RSS while COUNT connections are held open through it;
#   4. cached DNS queries/s and p50/p99 latency, Bridle's resolver vs the
#      test authority directly.
#
# Usage: scripts/bench-egress.sh [--quick] [--no-build]     (as root)
#   --quick     smaller sizes and counts (finishes in under 2 minutes)
#   --no-build  use target/release/bridle as it is (or $BRIDLE)
# Environment (defaults: full / --quick):
#   BENCH_BYTES       bytes per stream               1 GiB / 512 MiB
#   BENCH_REPS        streams per direction          3 / 3
#   BENCH_CONNECTS    sequential connects            2000 / 500
#   BENCH_HOLD        concurrent connections held    1000 / 1000
#   BENCH_DNS_SECONDS seconds of windowed DNS load   5 / 2
#   BENCH_DNS_WINDOW  DNS queries in flight          64 / 64
#   BENCH_KEEP=1      keep the work directory (audit logs, raw results)
#
# NETWORK SAFETY: everything runs in a network namespace created here with
# only `lo` up; 198.51.100.7 on lo stands in for the internet. Bridle is
# started with `nsenter --net` (it keeps the host's cgroup and bpffs
# mounts). Every load loop is bounded in count and time; the EXIT trap
# stops the servers, ends Bridle and removes the namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BENCH=bench-egress
# shellcheck source=scripts/bench/common.sh
source scripts/bench/common.sh
bench_args "$@"
if ((QUICK)); then
  # A stream must last long enough to measure: 128 MiB took ~40 ms direct.
  BYTES=${BENCH_BYTES:-$((512 << 20))} REPS=${BENCH_REPS:-3} CONNECTS=${BENCH_CONNECTS:-500}
  HOLD=${BENCH_HOLD:-1000} DNS_SECONDS=${BENCH_DNS_SECONDS:-2} DNS_SEQ=2000
else
  BYTES=${BENCH_BYTES:-$((1 << 30))} REPS=${BENCH_REPS:-3} CONNECTS=${BENCH_CONNECTS:-2000}
  HOLD=${BENCH_HOLD:-1000} DNS_SECONDS=${BENCH_DNS_SECONDS:-5} DNS_SEQ=5000
fi
DNS_WINDOW=${BENCH_DNS_WINDOW:-64}

log() { printf '\n== %s\n' "$*" >&2; }
die() { echo "bench-egress: $*" >&2; exit 2; }

[[ $(id -u) -eq 0 ]] || die "needs root (network namespace, eBPF, cgroups); run with sudo"
for cmd in ip nsenter setpriv timeout pgrep; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (apt-get install iproute2 util-linux coreutils procps)"
done
PY=/usr/bin/python3 # the same interpreter direct and guarded, readable by `nobody`
[[ -x $PY ]] || die "$PY not found (apt-get install python3)"

bench_build
bench_setup bridle-bench-

# --- the namespace and its "internet" ----------------------------------------
cp scripts/bench/client.py scripts/bench/server.py tests/support/dns_authority.py "$WORK/py/"
chmod 644 "$WORK/py/"*.py
# The bench permits every connect and query: what is measured is the cost
# of redirection, detection, a policy decision and an audit record.
cat >"$WORK/pol/bench.cedar" <<'EOF'
@id("bench-permit-all") @reason("benchmark: everything is allowed")
permit(principal, action, resource);
EOF
printf '[dns]\nupstreams = ["127.0.0.1:5353"]\n' >"$WORK/bridle.toml"

SERVER=198.51.100.7 PING_PORT=7001 DATA_PORT=7002 HOLD_PORT=7003
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add "$SERVER/32" dev lo
# Started directly (nsenter execs python): $! is the server's own pid.
nsenter --net="/run/netns/$NS" "$PY" "$WORK/py/server.py" "$SERVER" "$PING_PORT" "$DATA_PORT" "$HOLD_PORT" "$WORK/server.ready" &
PIDS+=($!)
nsenter --net="/run/netns/$NS" "$PY" "$WORK/py/dns_authority.py" 127.0.0.1 5353 allowed.test="$SERVER" &
PIDS+=($!)
for _ in $(seq 100); do [[ -f $WORK/server.ready ]] && break; sleep 0.05; done
[[ -f $WORK/server.ready ]] || die "the test servers did not start"
FLOOR_PING=8001 FLOOR_DATA=8002
bench_relay "$FLOOR_PING" "$SERVER" "$PING_PORT"
bench_relay "$FLOOR_DATA" "$SERVER" "$DATA_PORT"

NOBODY_UID=$(id -u nobody) NOBODY_GID=$(id -g nobody)
# Unguarded: the client straight in the namespace, as the same user.
direct() {
  timeout -k 5 "$1" nsenter --net="/run/netns/$NS" \
    setpriv --reuid="$NOBODY_UID" --regid="$NOBODY_GID" --clear-groups "$PY" "$WORK/py/client.py" "${@:2}"
}
# Guarded: the same client under `bridle run`, as the end-to-end tests run it.
guarded_argv() {
  local audit=$1
  shift
  GUARDED=(nsenter --net="/run/netns/$NS" "$BRIDLE" run --config "$WORK/bridle.toml" --policies "$WORK/pol"
    --audit "$WORK/audit/$audit.jsonl" --user nobody -- "$PY" "$WORK/py/client.py" --parent-cpu "$@")
}
decisions() { grep -c '"type":"decision"' "$WORK/audit/$1.jsonl" 2>/dev/null || true; }

log "host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
note_compilers "when the bench started"

# --- 1. connect latency --------------------------------------------------------
log "1. TCP connect() and connect + 1-byte request/response (time to first byte) x $CONNECTS (sequential)"
LAT=(latency --addr "$SERVER" --port "$PING_PORT" --count "$CONNECTS" --time-limit 60)
keep latency-direct "$(direct 90 "${LAT[@]}")"
((FLOOR)) && keep latency-floor "$(direct 90 latency --addr 127.0.0.1 --port "$FLOOR_PING" --count "$CONNECTS" --time-limit 60)"
keep latency-guarded "$(guarded 90 audit-latency "${LAT[@]}")"
echo "audited decisions (guarded): $(decisions audit-latency)" >&2

# --- 2. throughput ---------------------------------------------------------------
log "2. one TCP stream of $BYTES bytes, up and down, x $REPS"
THR=(throughput --addr "$SERVER" --port "$DATA_PORT" --bytes "$BYTES" --reps "$REPS" --time-limit 240)
keep throughput-direct "$(direct 300 "${THR[@]}")"
((FLOOR)) && keep throughput-floor "$(direct 300 throughput --addr 127.0.0.1 --port "$FLOOR_DATA" --bytes "$BYTES" --reps "$REPS" --time-limit 240)"
keep throughput-guarded "$(guarded 300 audit-throughput "${THR[@]}")"

# --- 3. connections held --------------------------------------------------------
log "3. $HOLD concurrent connections held through the proxy"
guarded_argv audit-hold hold --addr "$SERVER" --port "$HOLD_PORT" --count "$HOLD" --markers "$WORK/markers" \
  --time-limit 60 --hold-max 30
measure_hold 70 35
echo "audited decisions (guarded): $(decisions audit-hold)" >&2

# --- 4. DNS --------------------------------------------------------------------------
log "4. DNS: allowed.test, cached, ${DNS_SECONDS}s with $DNS_WINDOW in flight"
DNS=(dns --name allowed.test --seq-count "$DNS_SEQ" --seq-seconds 15 --seconds "$DNS_SECONDS" --window "$DNS_WINDOW")
keep dns-direct "$(direct 60 "${DNS[@]}" --server 127.0.0.1 --port 5353)"
# A "public resolver" with no route in the namespace: the redirector sends
# the queries to Bridle's resolver (as the end-to-end test does).
keep dns-guarded "$(guarded 60 audit-dns "${DNS[@]}" --server 198.51.100.53 --port 53)"
echo "audited decisions (guarded): $(decisions audit-dns)" >&2

# --- summary ---------------------------------------------------------------------------
note_compilers "when the bench ended"
printf '{"lines": %s}\n' "$("$PY" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${NOTES[@]}")" >"$WORK/res/notes.json"
log "summary ($( ((QUICK)) && echo quick || echo full ) mode, $(date -u +%FT%TZ), $(nproc) cores)"
"$PY" scripts/bench/summary.py "$WORK/res"
