#!/usr/bin/env bash
# Runs every Bridle test on a fresh machine: installs what the tests need
# (idempotently), then formats-check, lints, builds and tests the workspace,
# and runs the policy test files through the real binary.
#
# Usage: scripts/test.sh            (as root, or with sudo for the installs)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }
# shellcheck source=scripts/lib/build-deps.sh
source scripts/lib/build-deps.sh

# --- what the tests need ----------------------------------------------------
# Debian packages by the command they provide. Installed only when missing,
# so a second run does nothing.
declare -A NEED=(
  [make]=make
  [pkg-config]=pkg-config
  [git]=git
  [curl]=curl
  [ip]=iproute2        # redirector-ebpf kernel test: ip netns
  [python3]=python3    # redirector-ebpf kernel test: the guarded client
  [nsenter]=util-linux # bridle run test: enter the test netns, keep host mounts (also runuser, setsid)
  [pgrep]=procps       # bridle run test: no guarded process outlives its session
  [dig]=dnsutils       # DNS resolver tests: the real dig client
  [node]=nodejs        # TLS interception test: node's fetch through Bridle
  [openssl]=openssl    # CA test: openssl verifies a leaf Bridle minted
  [npm]=npm            # MCP gateway tests: installs the reference MCP server
)

install_missing() {
  local missing=()
  for cmd in "${!NEED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
  done
  # The build's own: clang, gcc and the eBPF headers.
  mapfile -t -O "${#missing[@]}" missing < <(build_packages_missing)
  # The system roots Bridle verifies upstreams with by default.
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
  # TLS interception tests: python requests and websockets as the guarded
  # (nobody) user.
  /usr/bin/python3 -c 'import requests' 2>/dev/null || missing+=(python3-requests)
  /usr/bin/python3 -c 'import websockets' 2>/dev/null || missing+=(python3-websockets)
  # MCP gateway tests: a venv for the MCP Python SDK.
  /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
      echo "scripts/test.sh: need root to install ${missing[*]} (run with sudo)" >&2
      exit 2
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    # shellcheck disable=SC1091
    [[ -f "$HOME/.cargo/env" ]] && source "$HOME/.cargo/env"
  fi
  command -v cargo >/dev/null 2>&1 || { echo "scripts/test.sh: cargo not found (install Rust 1.95 with rustup)" >&2; exit 2; }
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null 2>&1 || true
}

# MCP gateway tests talk to real MCP peers: the official Python SDK (client
# and server) in a venv, and the reference servers from npm, both
# under target/ and installed only when missing. Versions are pinned so the
# peers do not change under the tests.
install_mcp_peers() {
  local venv=target/mcp-venv npm_dir=target/mcp-npm
  if ! "$venv/bin/python" -c 'import mcp' 2>/dev/null; then
    log "installing the MCP Python SDK into $venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'mcp==2.3.0'
  fi
  if [[ ! -x $npm_dir/node_modules/.bin/mcp-server-everything || ! -x $npm_dir/node_modules/.bin/mcp-server-filesystem ]]; then
    log "installing the reference MCP servers (everything, filesystem) into $npm_dir"
    mkdir -p "$npm_dir"
    [[ -f $npm_dir/package.json ]] || echo '{"private": true}' >"$npm_dir/package.json"
    npm install --prefix "$npm_dir" --no-audit --no-fund --silent \
      @modelcontextprotocol/server-everything@2026.8.31 @modelcontextprotocol/server-filesystem@2026.8.31
  fi
  export BRIDLE_TEST_PYTHON="$PWD/$venv/bin/python"
  export BRIDLE_TEST_MCP_EVERYTHING="$PWD/$npm_dir/node_modules/.bin/mcp-server-everything"
  export BRIDLE_TEST_MCP_FILESYSTEM="$PWD/$npm_dir/node_modules/.bin/mcp-server-filesystem"
}

install_missing
install_mcp_peers

# --- checks -------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo test (unit, integration, end-to-end through the real binary; benches run once in test mode)"
cargo test --workspace --all-targets --locked

log "policy tests through the real binary"
cargo run --quiet --locked -- policy validate policies/default policies/examples
cargo run --quiet --locked -- policy test policies/tests/

# The Docker suite builds three images (Bridle compiles in its build stage)
# and drives compose.yaml on internal networks; it starts dockerd and builds
# its base images itself. BRIDLE_TEST_DOCKER=0 skips it (never in CI).
if [[ ${BRIDLE_TEST_DOCKER:-1} == 0 ]]; then
  log "SKIPPING the Docker end-to-end suite (BRIDLE_TEST_DOCKER=0)"
else
  log "Docker end-to-end suite (compose.yaml + tests/docker/compose.test.yaml)"
  tests/docker/e2e.sh
fi
