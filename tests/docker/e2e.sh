#!/usr/bin/env bash
# The Docker end-to-end suite: compose.yaml as users run it, with
# tests/docker/compose.test.yaml on top (internal networks only; the
# "internet" is the upstream container: DNS authority + HTTPS for *.test,
# with the suite's own test CA). Every check runs a real client inside the
# agent container, which shares Bridle's network namespace.
#
# Needs root and a Docker engine (scripts/docker/dockerd.sh starts one).
# Base images come from scripts/docker/images.sh (debootstrap, no registry).
# Usage: tests/docker/e2e.sh            exit 0 when every check passed
#        tests/docker/e2e.sh --up       bring the test stack up and leave it
#                                       (E2E_DIR=/tmp/bridle-e2e-up; then
#                                       `docker-compose -p bridle-e2e -f compose.yaml
#                                        -f tests/docker/compose.test.yaml …`)
set -euo pipefail
cd "$(dirname "$0")/../.."

STARTED=$(date +%s)
PROJECT=bridle-e2e
UP_ONLY=false
if [[ ${1:-} == --up ]]; then
    UP_ONLY=true
    E2E_DIR=/tmp/bridle-e2e-up
    rm -rf "$E2E_DIR" && mkdir -p "$E2E_DIR"
else
    E2E_DIR=$(mktemp -d /tmp/bridle-e2e.XXXXXX)
fi
export E2E_DIR
FAILED=()

log() { printf '\n-- %s\n' "$*"; }
pass() { printf '  ok    %s\n' "$1"; }
fail() {
    printf '  FAIL  %s\n' "$1"
    [[ -n ${2:-} ]] && printf '%s\n' "$2" | sed 's/^/        /' | head -40
    FAILED+=("$1")
}
# expect NAME PATTERN OUTPUT: OUTPUT matches the extended regex PATTERN.
expect() {
    if grep -Eq -- "$2" <<<"$3"; then pass "$1"; else fail "$1" "expected /$2/ in:
$3"; fi
}
dc() { docker-compose -p "$PROJECT" -f compose.yaml -f tests/docker/compose.test.yaml "$@"; }
# In the agent container, as its unprivileged user; never fails the script.
agent() { dc exec -T agent sh -c "$1" 2>&1 || true; }
host_pins() { [[ -e /sys/fs/bpf/bridle/up ]] && echo present || echo absent; }

cleanup() {
    dc down -v --remove-orphans >/dev/null 2>&1 || true
    # A failed run may leave the appliance's pins (failing closed for
    # namespaces that no longer exist): remove them and its cgroup.
    rm -rf /sys/fs/bpf/bridle/up 2>/dev/null || true
    for root in /sys/fs/cgroup/unified /sys/fs/cgroup; do
        rmdir "$root/bridle/up" 2>/dev/null || true
    done
    rm -rf "$E2E_DIR"
}
$UP_ONLY || trap cleanup EXIT

# --- engine, images, test PKI -------------------------------------------------
scripts/docker/dockerd.sh
read -r BASE RUST < <(scripts/docker/images.sh)
export BRIDLE_BASE_IMAGE=$BASE BRIDLE_BUILDER_IMAGE=$RUST
cleanup_before=$(host_pins)
[[ $cleanup_before == present ]] && echo "e2e: removing pins a previous run left" && rm -rf /sys/fs/bpf/bridle/up

log "test PKI and policies in $E2E_DIR"
mkdir -p "$E2E_DIR/pki" "$E2E_DIR/policies" "$E2E_DIR/trust-only" "$E2E_DIR/bad-policies"
(
    cd "$E2E_DIR/pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=Bridle e2e test CA" -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=allowed.test" \
        -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:allowed.test,DNS:*.allowed.test,DNS:denied.test,DNS:*.denied.test\nextendedKeyUsage=serverAuth\n' >ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext \
        -out server.pem 2>/dev/null
    chmod 0644 ./*
)
cp policies/default/*.cedar tests/docker/policies/*.cedar "$E2E_DIR/policies/"
printf 'permit (principal, action, resource)\nwhen { resource.nope == };\n' >"$E2E_DIR/bad-policies/broken.cedar"

log "building the images (bridle compiles in the build stage)"
build_started=$(date +%s)
dc build --quiet 2>&1 | grep -v -e DEPRECATED -e 'legacy builder' -e buildx -e 'docs.docker.com' || true
docker image inspect bridle:local bridle-agent:local bridle-mcp-demo:local >/dev/null
echo "images built in $(($(date +%s) - build_started)) s"

# --- bad input: Bridle refuses to start, and says why --------------------------
if ! $UP_ONLY; then
log "bad input"
out=$(docker run --rm --network none bridle:local 2>&1 || true)
expect "missing CA volume: refused, naming the trust directory" "trust directory /var/lib/bridle/trust does not exist" "$out"
out=$(docker run --rm --network none -v "$E2E_DIR/trust-only:/var/lib/bridle/trust" \
    -v "$E2E_DIR/bad-policies:/etc/bridle/policies:ro" bridle:local 2>&1 || true)
expect "policy error at start: refused with file:line" "broken\.cedar:2:" "$out"
out=$(docker run --rm --network none -v "$E2E_DIR/trust-only:/var/lib/bridle/trust" bridle:local 2>&1 || true)
expect "no cgroup v2 in the container: refused, naming the requirement" "no cgroup v2 mount found.*cgroup2" "$out"
[[ $(host_pins) == absent ]] && pass "a refused start pins nothing" || fail "a refused start pins nothing"
fi

# --- the stack -------------------------------------------------------------------
log "docker-compose up"
up_started=$(date +%s)
if ! dc up -d 2>&1 | grep -v -e DEPRECATED -e 'legacy builder' -e buildx -e 'docs.docker.com'; then :; fi
if ! dc ps agent | grep -q Up; then
    dc logs --tail 50 bridle
    fail "the stack comes up (bridle healthy, agent started)"
    exit 1
fi
pass "the stack comes up in $(($(date +%s) - up_started)) s"
# The agent may start only once Bridle answered its health check (programs
# attached, listeners up): compare the first passing probe with the agent's start.
order=$(python3 - "$(docker inspect "$(dc ps -q bridle)")" "$(docker inspect "$(dc ps -q agent)")" <<'PY'
import json, sys
from datetime import datetime
def t(s):  # Docker's RFC 3339 with nanoseconds
    return datetime.fromisoformat(s[:26].rstrip("Z") + "+00:00")
bridle, agent = json.loads(sys.argv[1])[0], json.loads(sys.argv[2])[0]
healthy = [p for p in bridle["State"]["Health"]["Log"] if p["ExitCode"] == 0]
first_ok = min(t(p["End"]) for p in healthy) if healthy else None
started = t(agent["State"]["StartedAt"])
print("before" if first_ok and first_ok <= started else f"agent started {started}, bridle healthy {first_ok}")
PY
)
expect "the agent starts only after Bridle is ready (health check)" "^before$" "$order"
if $UP_ONLY; then
    echo "stack up; E2E_DIR=$E2E_DIR"
    exit 0
fi

log "from inside the agent container"
out=$(agent 'curl -sS --max-time 15 https://api.allowed.test/v1/ok')
expect "allowed HTTPS request works" '"path": "/v1/ok"' "$out"
out=$(agent 'curl -sSv --max-time 15 -o /dev/null https://api.allowed.test/v1/ok 2>&1 | grep -i "issuer:"')
expect "and is intercepted: the agent sees a leaf from Bridle's CA" "issuer: CN=Bridle CA" "$out"
out=$(agent 'curl -sS --max-time 15 -H "authorization: Bearer $API_TOKEN" https://api.allowed.test/echo')
real_sha=$(printf %s 'Bearer e2e-real-token-5f1c9a' | sha256sum | cut -d' ' -f1)
expect "credential injection: the upstream gets the real token" "\"authorization\": \"$real_sha\"" "$out"
expect "and reads it masked where the upstream repeats it" '"authorization": "Bearer bridle-secret-api[*]+"' "$out"
if grep -q e2e-real-token <<<"$out"; then fail "the real token never reaches the agent" "$out"; else pass "the real token never reaches the agent"; fi
out=$(agent 'env | grep -c e2e-real-token; echo placeholder=$API_TOKEN')
expect "the agent holds only the placeholder" "^0\$" "$out"
out=$(agent 'ls -A /etc/bridle; test -e /etc/bridle/ca.key && echo KEY-VISIBLE')
expect "the agent's CA volume holds Bridle's certificate and bundle" "^bundle\.pem$" "$out"
expect "(ca.pem too)" "^ca\.pem$" "$out"
[[ $out == *KEY-VISIBLE* || $out == *key* ]] && fail "no CA key reaches the agent" "$out" || pass "no CA key reaches the agent"
out=$(agent 'curl -sS --max-time 15 -w "\nstatus=%{http_code}\n" https://denied.test/x')
expect "denied domain: 403 from Bridle" "status=403" "$out"
expect "with the policy's reason" "off limits in the Docker suite" "$out"
out=$(agent 'dig +short +time=5 +tries=1 @9.9.9.9 api.allowed.test')
expect "DNS to a public resolver address is redirected to Bridle" "^10\.213\.77\.10$" "$out"
out=$(agent 'dig +short +tcp +time=5 +tries=1 @9.9.9.9 git.allowed.test')
expect "DNS over TCP too" "^10\.213\.77\.10$" "$out"
probe='import errno, socket, sys
def err(f):
    try:
        f(); return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("udp443=" + err(lambda: udp.sendto(b"q", ("198.51.100.1", 443))))
print("console=" + err(lambda: socket.create_connection(("127.0.0.1", 18080), timeout=5)))
print("proxy=" + err(lambda: socket.create_connection(("127.0.0.1", 15001), timeout=5)))'
out=$(agent "python3 -c '$probe'")
expect "UDP 443 (QUIC) is refused in the kernel" "udp443=EPERM" "$out"
expect "the console port is unreachable" "console=EPERM" "$out"
expect "the proxy's own port cannot be dialled" "proxy=EPERM" "$out"
out=$(agent 'python3 /e2e/mcp_call.py http://127.0.0.1:18090/mcp/notes write_note "{\"path\": \"todo.md\", \"text\": \"hi\"}"')
expect "MCP call through the gateway: allowed call reaches the server" "wrote 2 characters to todo.md" "$out"
out=$(agent 'python3 /e2e/mcp_call.py http://127.0.0.1:18090/mcp/notes write_note "{\"path\": \"repo/.github/workflows/ci.yml\", \"text\": \"x\"}"')
expect "MCP call through the gateway: a forbidden call gets the policy's reason" "may not write CI configuration" "$out"

log "the packet filter"
# A listener in the agent, dialled from another container on its network:
# the SYNs are dropped before it sees them (the agent never accepts).
listen='import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8081)); s.listen(1); s.settimeout(8)
try:
    s.accept(); print("accepted=yes")
except OSError:
    print("accepted=no")'
dial='import socket
try:
    socket.create_connection(("10.213.77.2", 8081), timeout=3).close(); print("dial=connected")
except OSError as e:
    print("dial=" + type(e).__name__)'
agent "python3 -c '$listen'" >"$E2E_DIR/listen.out" &
sleep 1
out=$(dc exec -T upstream python3 -c "$dial" 2>&1 || true)
wait
expect "a connection into the agent from its network is dropped" "dial=(timeout|TimeoutError)" "$out"
expect "and the agent never accepts it" "accepted=no" "$(cat "$E2E_DIR/listen.out")"

log "capabilities in the guarded namespace"
out=$(agent 'grep ^CapEff /proc/self/status')
expect "the compose agent holds no capabilities" "CapEff:[[:space:]]+0+$" "$out"
# A root container that keeps Docker's default set (CAP_NET_RAW: AF_PACKET
# frames pass no socket hook) joins Bridle's namespace: Bridle says so.
raw=$(docker run -d --rm -u 0 --network "container:$(dc ps -q bridle)" bridle-agent:local sleep 60 2>&1)
for _ in $(seq 1 30); do
    out=$(dc logs --tail 40 bridle 2>&1)
    [[ $out =~ \(sleep\)\ holds\ CAP_NET_RAW ]] && break
    sleep 1
done
expect "a guarded root process with CAP_NET_RAW is reported" "guarded process [0-9]+ \(sleep\) holds CAP_NET_RAW" "$out"
docker rm -f "$raw" >/dev/null 2>&1 || true
# A plain user holds nothing, but Docker's default bounding set keeps
# CAP_NET_RAW for a setuid program to give it: said for its container.
gain=$(docker run -d --rm -u 65534 --network "container:$(dc ps -q bridle)" bridle-agent:local sleep 60 2>&1)
for _ in $(seq 1 30); do
    out=$(dc logs --tail 40 bridle 2>&1)
    [[ $out =~ \(sleep\)\)\ can\ gain\ CAP_NET_RAW ]] && break
    sleep 1
done
expect "a guarded user who can gain CAP_NET_RAW is reported" "of container [0-9a-f]{12} \(e\.g\. [0-9]+ \(sleep\)\) can gain CAP_NET_RAW through a setuid" "$out"
docker rm -f "$gain" >/dev/null 2>&1 || true

log "audit log on the volume"
out=$(dc exec -T bridle bridle audit verify /var/lib/bridle/audit/audit.jsonl 2>&1 || echo "exit=$?")
expect "bridle audit verify: the chain holds" "audit\.jsonl: OK, [1-9][0-9]* records" "$out"
[[ $out == *exit=* ]] && fail "audit verify exits 0" "$out"
out=$(dc exec -T bridle bridle audit query /var/lib/bridle/audit/audit.jsonl --effect deny --json 2>&1 || true)
expect "the denied request is in the audit log" "denied.test" "$out"
out=$(dc exec -T bridle sh -c 'grep -c "holds CAP_NET_RAW" /var/lib/bridle/audit/audit.jsonl' 2>&1 || true)
expect "the capability warning is an audit notice" "^[1-9]" "$out"
if dc exec -T bridle sh -c 'grep -c e2e-real-token /var/lib/bridle/audit/audit.jsonl' 2>/dev/null | grep -qv '^0$'; then
    fail "the real token never reaches the audit log"
else
    pass "the real token never reaches the audit log"
fi

# --- fail closed -------------------------------------------------------------------
log "fail closed"
# Name lookups and connects by address: both must fail, and fast.
down_probe='curl -sS --max-time 10 https://api.allowed.test/v1/ok; echo "by-name=$?"
curl -sS --max-time 10 --resolve api.allowed.test:443:10.213.77.10 https://api.allowed.test/v1/ok; echo "by-address=$?"'
docker kill "$(dc ps -q bridle)" >/dev/null
out=$(agent "$down_probe")
expect "Bridle killed: the agent's DNS lookups fail" "by-name=6" "$out"
expect "Bridle killed: the agent's connects fail" "by-address=7" "$out"
[[ $out == *'"path"'* ]] && fail "nothing gets through while Bridle is down" "$out"
[[ $(host_pins) == present ]] && pass "the programs stay pinned while Bridle is dead" || fail "the programs stay pinned while Bridle is dead"
dc up -d bridle >/dev/null 2>&1
dc restart agent >/dev/null 2>&1
out=$(agent 'curl -sS --max-time 15 https://api.allowed.test/v1/ok')
expect "docker-compose up -d bridle (and the agent rejoining) recovers" '"path": "/v1/ok"' "$out"
out=$(dc logs --tail 30 bridle 2>&1)
expect "the new Bridle re-adopted the pins" "re-adopted" "$out"

dc stop bridle >/dev/null 2>&1
out=$(agent "$down_probe")
expect "Bridle stopped with agents left: their connects fail" "by-address=7" "$out"
out=$(dc logs --tail 10 bridle 2>&1)
expect "and it says the programs stay" "guarded process\(es\) remain" "$out"
dc up -d bridle >/dev/null 2>&1
dc restart agent >/dev/null 2>&1
out=$(agent 'curl -sS --max-time 15 https://api.allowed.test/v1/ok')
expect "and recovers again" '"path": "/v1/ok"' "$out"

log "docker-compose down"
dc down -v >/dev/null 2>&1
[[ $(host_pins) == absent ]] && pass "down leaves no pinned programs" || fail "down leaves no pinned programs" "$(ls -R /sys/fs/bpf/bridle 2>&1)"
left=$(ls -d /sys/fs/cgroup/unified/bridle/up /sys/fs/cgroup/bridle/up 2>/dev/null || true)
[[ -z $left ]] && pass "down leaves no cgroup" || fail "down leaves no cgroup" "$left"

echo
echo "Docker suite: $((${#FAILED[@]})) failed, wall time $(($(date +%s) - STARTED)) s"
if ((${#FAILED[@]})); then
    printf '  failed: %s\n' "${FAILED[@]}"
    exit 1
fi
