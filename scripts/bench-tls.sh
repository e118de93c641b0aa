#!/usr/bin/env bash
# Whole-system benchmark of TLS interception by `bridle run` (issue 4,
# "Numbers"): one HTTPS client, the same in every configuration, against an
# HTTPS upstream whose certificate comes from a test "public" CA, measured
# in the same run
#   direct     straight to the upstream (trusting the test CA),
#   bridle     under `bridle run` (connects transparently intercepted: TLS
#              terminated with a leaf from Bridle's CA, each request decided
#              and audited, a verified TLS connection upstream),
#   mitmproxy  through mitmdump (PyPI) as an explicit proxy (CONNECT),
#              verifying the upstream against the same test CA.
#
#   1. keep-alive HTTPS GETs (64-byte body), one connection: requests/s and
#      p50/p99 latency, direct vs bridle vs mitmproxy;
#   2. first request to a new host: new connection + handshake(s) + one GET,
#      each to a new SNI under *.bench.test (Bridle mints a leaf for each),
#      alternating with the same to a known host; direct vs bridle (vs
#      mitmproxy);
#   3. one download of BYTES over keep-alive, direct vs bridle;
#   4. Bridle's RSS with HOLD TLS connections held open through it.
#   1 and 3 also through the floor: a minimal TCP splice relay
#   (scripts/bench/relay.c) that passes the client's TLS through untouched,
#   i.e. what one more process and two more loopback hops cost here.
#
# Usage: scripts/bench-tls.sh [--quick] [--no-build] [--instructions]  (as root)
#   --quick         smaller sizes and counts (a few minutes)
#   --no-build      use target/release/bridle as it is (or $BRIDLE)
#   --instructions  instead of 1-4: the instructions Bridle executes per
#                   keep-alive GET, the whole process and its tokio workers
#                   alone (the requests' path), under valgrind's callgrind
#                   (BENCH_IR_COUNT GETs minus 1,000, so start-up cancels
#                   out), two runs; with
#                   BENCH_BASELINE=/path/to/another/bridle the same for that
#                   build in turns, and the ratio. Steady where wall-clock
#                   numbers on a shared machine are not: use it to compare
#                   builds. (valgrind has no SHA extensions: the audit
#                   chain's SHA-256 counts ~30k instructions per record
#                   here, a few hundred natively.)
# Environment (defaults: full / --quick):
#   BENCH_ROUNDS       keep-alive rounds (interleaved)        3 / 3
#   BENCH_KA_COUNT     keep-alive GETs per round              10000 / 3000
#   BENCH_MITM_COUNT   the same through mitmproxy             2000 / 500
#   BENCH_NEWHOST      new hosts (and as many known-host)     1000 / 300
#   BENCH_MITM_NEWHOST the same through mitmproxy             300 / 150
#   BENCH_BYTES        bytes per download                     1 GiB / 256 MiB
#   BENCH_REPS         downloads of each configuration        3 / 3
#   BENCH_HOLD         concurrent TLS connections held        1000 / 1000
#   BENCH_VENV         mitmproxy's venv (made, and `pip install mitmproxy`
#                      run in it, when it has no mitmdump)     target/bench-tls/venv
#   BENCH_MITM_PYTHON  the python that venv is made with      first of python3.13, python3.12, python3
#   BENCH_KEEP=1       keep the work directory (audit logs, raw results)
#   BENCH_IR_COUNT     GETs per --instructions run            6000
#   BENCH_BASELINE     a second bridle binary for --instructions
#
# mitmproxy is a benchmark-only dependency: never installed by CI.
#
# NETWORK SAFETY: everything runs in a network namespace created here with
# only `lo` up; 198.51.100.7 on lo stands in for the internet (the HTTPS
# upstream on :443), mitmdump listens on 127.0.0.1 inside it. Bridle is
# started with `nsenter --net` (it keeps the host's cgroup and bpffs mounts).
# Every load loop is bounded in count and time; the EXIT trap stops the
# servers and mitmdump, ends Bridle and removes the namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BENCH=bench-tls
# shellcheck source=scripts/bench/common.sh
source scripts/bench/common.sh
INSTRUCTIONS=0 ARGS=()
for arg in "$@"; do
  if [[ $arg == --instructions ]]; then INSTRUCTIONS=1; else ARGS+=("$arg"); fi
done
bench_args "${ARGS[@]}"
if ((QUICK)); then
  KA_COUNT=${BENCH_KA_COUNT:-3000} MITM_COUNT=${BENCH_MITM_COUNT:-500} NEWHOST=${BENCH_NEWHOST:-300} MITM_NEWHOST=${BENCH_MITM_NEWHOST:-150}
  BYTES=${BENCH_BYTES:-$((256 << 20))} REPS=${BENCH_REPS:-3} HOLD=${BENCH_HOLD:-1000}
else
  KA_COUNT=${BENCH_KA_COUNT:-10000} MITM_COUNT=${BENCH_MITM_COUNT:-2000} NEWHOST=${BENCH_NEWHOST:-1000} MITM_NEWHOST=${BENCH_MITM_NEWHOST:-300}
  BYTES=${BENCH_BYTES:-$((1 << 30))} REPS=${BENCH_REPS:-3} HOLD=${BENCH_HOLD:-1000}
fi
ROUNDS=${BENCH_ROUNDS:-3}

log() { printf '\n== %s\n' "$*" >&2; }
die() { echo "bench-tls: $*" >&2; exit 2; }

[[ $(id -u) -eq 0 ]] || die "needs root (network namespace, eBPF, cgroups); run with sudo"
for cmd in ip nsenter setpriv timeout openssl; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (apt-get install iproute2 util-linux coreutils openssl)"
done
PY=/usr/bin/python3 # the same interpreter direct and guarded, readable by `nobody`
[[ -x $PY ]] || die "$PY not found (apt-get install python3)"
if ((INSTRUCTIONS)); then
  command -v valgrind >/dev/null || die "--instructions needs valgrind (apt-get install valgrind)"
fi

bench_build

# --- mitmproxy (PyPI, into a venv of the bench's own) -------------------------
# --instructions measures Bridle alone: no mitmproxy, no floor relay.
VENV=${BENCH_VENV:-$ROOT/target/bench-tls/venv}
if ((!INSTRUCTIONS)) && [[ ! -x $VENV/bin/mitmdump ]]; then
  VPY=${BENCH_MITM_PYTHON:-}
  if [[ -z $VPY ]]; then
    for c in python3.13 python3.12 python3; do
      # pyenv shims exist for versions that are not selected: try them.
      if "$c" -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then VPY=$c; break; fi
    done
  fi
  [[ -n $VPY ]] || die "no python >= 3.10 with venv for mitmproxy (set BENCH_MITM_PYTHON)"
  log "pip install mitmproxy into $VENV (with $VPY)"
  "$VPY" -m venv "$VENV" || die "cannot make a venv with $VPY"
  "$VENV/bin/pip" install -q mitmproxy >&2 || die "pip install mitmproxy failed"
fi
MITM_VERSION="not used"
((INSTRUCTIONS)) || MITM_VERSION=$("$VENV/bin/mitmdump" --version 2>/dev/null | awk '/^Mitmproxy:/ {print $2}')

bench_setup bridle-tlsbench-
mkdir -p "$WORK/pki" "$WORK/mitm"
cp scripts/bench/client.py scripts/bench/tls_client.py scripts/bench/tls_upstream.py "$WORK/py/"
chmod 755 "$WORK/pki"
chmod 644 "$WORK/py/"*.py

# --- the test "public" CA and the upstream's wildcard certificate -------------
(
  cd "$WORK/pki"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/O=Bench Public CA/CN=Bridle bench public CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out ca.pem 2>/dev/null
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key 2>/dev/null
  openssl req -new -key server.key -subj "/CN=bench.test" -out server.csr 2>/dev/null
  printf '%s\n' basicConstraints=CA:FALSE keyUsage=critical,digitalSignature extendedKeyUsage=serverAuth \
    'subjectAltName=DNS:bench.test,DNS:*.bench.test' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 \
    -extfile server.ext -out server.pem 2>/dev/null
  chmod 644 ca.pem
) || die "openssl could not make the test PKI"

# The bench permits everything: what is measured is interception, one
# decision and one audit record per request, and the upstream TLS.
cat >"$WORK/pol/bench.cedar" <<'EOF'
@id("bench-permit-all") @reason("benchmark: everything is allowed")
permit(principal, action, resource);
EOF
# Nothing listens on 127.0.0.1:5353: no DNS is used (connects go to the IP).
cat >"$WORK/bridle.toml" <<EOF
[dns]
upstreams = ["127.0.0.1:5353"]

[tls]
ca_dir = "$WORK/ca"
upstream_ca_bundle = "$WORK/pki/ca.pem"
EOF

# --- the namespace, its "internet" and mitmproxy -------------------------------
SERVER=198.51.100.7 MITM_PORT=8080
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add "$SERVER/32" dev lo
# Started directly (nsenter execs python): $! is the server's own pid.
nsenter --net="/run/netns/$NS" "$PY" "$WORK/py/tls_upstream.py" "$SERVER" 443 \
  "$WORK/pki/server.pem" "$WORK/pki/server.key" "$WORK/upstream.ready" &
PIDS+=($!)
MITM_PID=
if ((!INSTRUCTIONS)); then
  nsenter --net="/run/netns/$NS" "$VENV/bin/mitmdump" -q --mode regular --listen-host 127.0.0.1 --listen-port "$MITM_PORT" \
    --set confdir="$WORK/mitm" --set ssl_verify_upstream_trusted_ca="$WORK/pki/ca.pem" \
    >"$WORK/mitmdump.log" 2>&1 &
  MITM_PID=$!
  PIDS+=("$MITM_PID")
fi
probe() { nsenter --net="/run/netns/$NS" "$PY" -c "import socket, sys; socket.create_connection(('$1', $2), 1).close()" 2>/dev/null; }
mitm_up() { [[ -z $MITM_PID ]] || probe 127.0.0.1 "$MITM_PORT"; }
for _ in $(seq 300); do [[ -f $WORK/upstream.ready ]] && mitm_up && break; sleep 0.1; done
[[ -f $WORK/upstream.ready ]] || die "the HTTPS upstream did not start"
if ((!INSTRUCTIONS)); then
  mitm_up || die "mitmdump did not start: $(tail -5 "$WORK/mitmdump.log")"
  FLOOR_PORT=8443
  bench_relay "$FLOOR_PORT" "$SERVER" 443
  TO_FLOOR=(--connect "127.0.0.1:$FLOOR_PORT" --cafile "$WORK/pki/ca.pem")
  [[ -f $WORK/mitm/mitmproxy-ca-cert.pem ]] || die "mitmdump made no CA in $WORK/mitm"
  install -m 644 "$WORK/mitm/mitmproxy-ca-cert.pem" "$WORK/pki/mitm-ca.pem"
fi

NOBODY_UID=$(id -u nobody) NOBODY_GID=$(id -g nobody)
TO_UPSTREAM=(--connect "$SERVER:443" --cafile "$WORK/pki/ca.pem")
# Unguarded: the client straight in the namespace, as the same user.
direct() {
  timeout -k 5 "$1" nsenter --net="/run/netns/$NS" \
    setpriv --reuid="$NOBODY_UID" --regid="$NOBODY_GID" --clear-groups "$PY" "$WORK/py/tls_client.py" "${@:2}"
}
# Through mitmproxy: the same client, CONNECT to the upstream, mitmproxy's CA.
mitm() {
  direct "$1" --connect "127.0.0.1:$MITM_PORT" --proxy --origin "$SERVER:443" --cafile "$WORK/pki/mitm-ca.pem" \
    --cpu-pid "$MITM_PID" "${@:2}"
}
# Guarded: the same client under `bridle run`; it trusts what `bridle run`
# points SSL_CERT_FILE at (the test CA + Bridle's CA).
guarded_argv() {
  local audit=$1
  shift
  GUARDED=(nsenter --net="/run/netns/$NS" "$BRIDLE" run --config "$WORK/bridle.toml" --policies "$WORK/pol"
    --audit "$WORK/audit/$audit.jsonl" --user nobody -- "$PY" "$WORK/py/tls_client.py" --parent-cpu
    --connect "$SERVER:443" --cafile env:SSL_CERT_FILE "$@")
}
# HTTP requests decided and audited in one guarded run.
requests_audited() {
  grep '"type":"decision"' "$WORK/audit/$1.jsonl" 2>/dev/null | grep -c '"http.request"' || true
}
log "host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); mitmproxy $MITM_VERSION"

# --- instructions per request (--instructions) ------------------------------------
# The keep-alive client under `bridle run`, with Bridle under callgrind (one
# profile per thread); prints the instructions of `bin` for COUNT GETs: the
# whole process, then its tokio workers alone (the requests' path; under
# valgrind's slow pace the audit flusher appends every record).
instructions() {
  local bin=$1 count=$2 argv=() arg
  rm -f "$WORK"/audit/audit-ir.jsonl* "$WORK"/callgrind.out.*
  guarded_argv audit-ir keepalive --rounds 1 --time-limit 240 --count "$count"
  for arg in "${GUARDED[@]}"; do
    if [[ $arg == "$BRIDLE" ]]; then
      argv+=(valgrind --tool=callgrind --separate-threads=yes --trace-children=no
        --callgrind-out-file="$WORK/callgrind.out.%p" "$bin")
    else
      argv+=("$arg")
    fi
  done
  env -u SUDO_UID timeout -k 5 600 "${argv[@]}" >"$WORK/ir.out" 2>"$WORK/ir.err" || die "$bin under callgrind failed: $(tail -3 "$WORK/ir.err")"
  grep -q '^RESULT .*"errors": 0' "$WORK/ir.out" || die "the client under $bin failed: $(tail -3 "$WORK/ir.out")"
  local file all=0 workers=0 ir
  for file in "$WORK"/callgrind.out.*; do
    ir=$(awk '/^summary:/ {print $2; exit}' "$file")
    all=$((all + ${ir:-0}))
    grep -q 'scheduler::multi_thread::worker' "$file" && workers=$((workers + ${ir:-0}))
  done
  echo "$all $workers"
}
if ((INSTRUCTIONS)); then
  IR_COUNT=${BENCH_IR_COUNT:-6000}
  ((IR_COUNT > 1000)) || die "BENCH_IR_COUNT must be above 1000"
  builds=("$BRIDLE")
  [[ -n ${BENCH_BASELINE:-} ]] && builds+=("$BENCH_BASELINE")
  [[ -z ${BENCH_BASELINE:-} || -x $BENCH_BASELINE ]] || die "BENCH_BASELINE=$BENCH_BASELINE is not an executable"
  log "instructions per keep-alive GET: ($IR_COUNT - 1000 GETs) under callgrind, two runs of: ${builds[*]}"
  declare -A all=() workers=()
  for r in 1 2; do
    for bin in "${builds[@]}"; do
      # Assignments, not `read < <(...)`: a failed run stops the bench
      # here instead of reading as zero instructions.
      few=$(instructions "$bin" 1000)
      many=$(instructions "$bin" "$IR_COUNT")
      read -r few_all few_workers <<<"$few"
      read -r many_all many_workers <<<"$many"
      a=$(((many_all - few_all) / (IR_COUNT - 1000))) w=$(((many_workers - few_workers) / (IR_COUNT - 1000)))
      all[$bin]+=" $a" workers[$bin]+=" $w"
      echo "$bin run $r: $a instructions per GET, $w of them on the tokio workers" >&2
    done
  done
  for bin in "${builds[@]}"; do
    echo "instructions per GET, $bin: whole process${all[$bin]}; tokio workers${workers[$bin]}"
  done
  if [[ -n ${BENCH_BASELINE:-} ]]; then
    "$PY" -c 'import statistics, sys
mean = lambda text: statistics.mean(map(int, text.split()))
print(f"ratio to the baseline (mean of runs): x{mean(sys.argv[1]) / mean(sys.argv[2]):.3f} whole process, "
      f"x{mean(sys.argv[3]) / mean(sys.argv[4]):.3f} tokio workers")' \
      "${all[$BRIDLE]}" "${all[$BENCH_BASELINE]}" "${workers[$BRIDLE]}" "${workers[$BENCH_BASELINE]}"
  fi
  exit 0
fi

NOTES+=("load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)")
note_compilers "when the bench started"

# --- 1. keep-alive GETs ------------------------------------------------------------
# Rounds interleave the three configurations, so a change in the machine's
# load (other builds) hits all three alike rather than one of them.
log "1. keep-alive HTTPS GETs, one connection: $ROUNDS rounds of $KA_COUNT (mitmproxy $MITM_COUNT), interleaved"
KA=(keepalive --rounds 1 --time-limit 90)
audited=0
for r in $(seq "$ROUNDS"); do
  keep "ka-direct.$r" "$(direct 120 "${TO_UPSTREAM[@]}" "${KA[@]}" --count "$KA_COUNT")"
  keep "ka-bridle.$r" "$(guarded 120 "audit-ka-$r" "${KA[@]}" --count "$KA_COUNT")"
  keep "ka-mitm.$r" "$(mitm 120 "${KA[@]}" --count "$MITM_COUNT")"
  ((FLOOR)) && keep "ka-floor.$r" "$(direct 120 "${TO_FLOOR[@]}" "${KA[@]}" --count "$KA_COUNT")"
  audited=$((audited + $(requests_audited "audit-ka-$r")))
done
echo "requests audited (bridle): $audited" >&2
printf '{"requests": %s}\n' "$audited" >"$WORK/res/ka-audit.json"
note_compilers "during the keep-alive runs"

# --- 2. first request to a new host ---------------------------------------------
NH_ROUND=$(((NEWHOST + ROUNDS - 1) / ROUNDS)) MITM_NH_ROUND=$(((MITM_NEWHOST + ROUNDS - 1) / ROUNDS))
log "2. new connection + handshake + GET: $ROUNDS rounds of $NH_ROUND new hosts + as many to a known host (mitmproxy $MITM_NH_ROUND), interleaved"
NH=(newhost --time-limit 90)
for r in $(seq "$ROUNDS"); do
  keep "nh-direct.$r" "$(direct 200 "${TO_UPSTREAM[@]}" "${NH[@]}" --count "$NH_ROUND" --prefix "d$r-$$")"
  keep "nh-bridle.$r" "$(guarded 200 "audit-nh-$r" "${NH[@]}" --count "$NH_ROUND" --prefix "b$r-$$")"
  keep "nh-mitm.$r" "$(mitm 200 "${NH[@]}" --count "$MITM_NH_ROUND" --prefix "m$r-$$")"
done
note_compilers "during the new-host runs"

# --- 3. download -------------------------------------------------------------------
log "3. download of $BYTES bytes over keep-alive, x $REPS each, interleaved"
DL=(download --bytes "$BYTES" --reps 1 --time-limit 240)
for r in $(seq "$REPS"); do
  keep "dl-direct.$r" "$(direct 300 "${TO_UPSTREAM[@]}" "${DL[@]}")"
  keep "dl-bridle.$r" "$(guarded 300 "audit-dl-$r" "${DL[@]}")"
  ((FLOOR)) && keep "dl-floor.$r" "$(direct 300 "${TO_FLOOR[@]}" "${DL[@]}")"
done
note_compilers "during the downloads"

# --- 4. connections held -------------------------------------------------------------
log "4. $HOLD concurrent TLS connections held through Bridle"
guarded_argv audit-hold hold --count "$HOLD" --markers "$WORK/markers" --time-limit 90 --hold-max 30
measure_hold 100 60

# --- summary ---------------------------------------------------------------------------
note_compilers "when the bench ended"
NOTES+=("load average at end: $(cut -d' ' -f1-3 /proc/loadavg)")
printf '{"lines": %s, "mitmproxy": "%s"}\n' \
  "$("$PY" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${NOTES[@]}")" "$MITM_VERSION" >"$WORK/res/notes.json"
log "summary ($( ((QUICK)) && echo quick || echo full ) mode, $(date -u +%FT%TZ), $(nproc) cores)"
"$PY" -B scripts/bench/tls_summary.py "$WORK/res" # -B: no __pycache__ in the tree
