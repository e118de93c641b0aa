# shellcheck shell=bash
# What the bench scripts share: their options, the release build, the
# namespace and work directory with their clean-up trap, keeping RESULT
# lines, noting compilers that steal CPU, and the "connections held" phase.
# Sourced once the script set BENCH (its name, for messages); the functions
# use BUILD, HOLD, ROOT, PY, log() and die() as the script sets them.

# Parses the options every bench script takes into QUICK and BUILD:
# --quick, --no-build, and --help (prints the script's header comment).
bench_args() {
  QUICK=0 BUILD=1
  for arg in "$@"; do
    case $arg in
      --quick) QUICK=1 ;;
      --no-build) BUILD=0 ;;
      -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *) echo "$BENCH: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
  done
}

# Builds target/release/bridle unless --no-build (or $BRIDLE) says otherwise.
bench_build() {
  if ((BUILD)) && [[ -z ${BRIDLE:-} ]]; then
    # What the build needs on a fresh machine (scripts/test.sh installs it too).
    local missing=()
    # shellcheck source=scripts/lib/build-deps.sh
    source scripts/lib/build-deps.sh
    mapfile -t missing < <(build_packages_missing)
    if ((${#missing[@]})); then
      [[ $(id -u) -eq 0 ]] || die "the build needs ${missing[*]}: install them (apt-get, as root) or run scripts/test.sh once"
      log "installing: ${missing[*]}"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    log "cargo build --release --locked"
    cargo build --release --locked >&2
  fi
  BRIDLE=${BRIDLE:-$ROOT/target/release/bridle}
  [[ -x $BRIDLE ]] || die "$BRIDLE not found (build it, or drop --no-build)"
}

# Removes namespaces named <prefix><pid> whose script is gone, then sets NS,
# WORK, PIDS (servers), BRIDLES (`bridle run` in the background) and the trap
# that stops them all and removes both.
bench_setup() {
  local prefix=$1 stale pid
  for stale in $(ip netns list | awk '{print $1}' | grep "^$prefix" || true); do
    pid=${stale#"$prefix"}
    if [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
      ip netns del "$stale" 2>/dev/null && echo "$BENCH: removed stale namespace $stale" >&2 || true
    fi
  done
  NS=$prefix$$
  WORK=$(mktemp -d "/tmp/$prefix.XXXXXX")
  PIDS=()
  BRIDLES=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM HUP
  ulimit -n "$(ulimit -Hn)"
  (($(ulimit -n) >= 2 * HOLD + 512)) || die "ulimit -n is $(ulimit -n); need $((2 * HOLD + 512)) for BENCH_HOLD=$HOLD"
  mkdir -p "$WORK/py" "$WORK/pol" "$WORK/res" "$WORK/markers" "$WORK/audit"
  chmod 755 "$WORK" "$WORK/py"
  chmod 1777 "$WORK/markers"
  # Root writes the audit logs: `bridle run` refuses a directory the
  # command's user could make files in, so they are not beside the markers.
  chmod 700 "$WORK/audit"
}

bench_cleanup() {
  local rc=$? pid
  set +e
  for pid in "${BRIDLES[@]}"; do
    # SIGTERM is forwarded to the command; Bridle then tears its session down.
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${BRIDLES[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null
      echo "$BENCH: had to kill bridle $pid; its session run-$pid may be orphaned: see 'bridle status'" >&2
    fi
  done
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  ip netns del "$NS" 2>/dev/null
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "$BENCH: kept $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}

# Runs the client under `bridle run` (GUARDED, from the script's
# guarded_argv) within a time limit.
guarded() {
  local limit=$1 audit=$2
  shift 2
  guarded_argv "$audit" "$@"
  env -u SUDO_UID timeout -k 5 "$limit" "${GUARDED[@]}"
}

# Keeps the RESULT line of a run's output as RESULTS/<name>.json.
keep() {
  local name=$1 out=$2
  if ! grep -m1 '^RESULT ' <<<"$out" | sed 's/^RESULT //' >"$WORK/res/$name.json" || [[ ! -s $WORK/res/$name.json ]]; then
    echo "$BENCH: $name produced no result; its output was:" >&2
    echo "$out" >&2
    return 1
  fi
  echo "$name: $(cut -c1-600 "$WORK/res/$name.json")" >&2
}

NOTES=()
# Compilers (other builds on this machine) take CPU from what is measured.
# (Not `pgrep -x 'rustc|cargo|cc1|ld'`: procps refuses patterns longer than
# 15 characters, so that check never saw one.)
compilers() { ps -e -o comm= | grep -c -x -E 'rustc|cargo|cc1|ld' || true; }
note_compilers() {
  local busy
  busy=$(compilers)
  if ((busy > 0)); then
    NOTES+=("$busy compiler processes (rustc/cargo/cc1/ld) were running $1: numbers are noisier")
    echo "$BENCH: warning: ${NOTES[-1]}" >&2
  fi
}

rss_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null; }
wait_marker() {
  local i
  for ((i = 0; i < $2 * 20; i++)); do [[ -f $WORK/markers/$1 ]] && return 0; sleep 0.05; done
  return 1
}

# The "connections held" phase: starts GUARDED (a hold client) in the
# background, reads Bridle's RSS idle, with every connection held (the
# client waits up to HELD_WAIT s for them) and after they close (up to
# CLOSED_WAIT s), and keeps rss.json and hold.json.
measure_hold() {
  local held_wait=$1 closed_wait=$2 bpid exe idle held hwm fds threads closed
  env -u SUDO_UID "${GUARDED[@]}" >"$WORK/hold.out" 2>"$WORK/hold.err" &
  bpid=$!
  BRIDLES+=("$bpid")
  # nsenter execs bridle: the pid started is Bridle's own.
  if wait_marker idle 30; then
    # The binary, not its name: a copy under another name can be measured.
    exe=$(readlink -f "/proc/$bpid/exe" 2>/dev/null || true)
    [[ $exe == "$(readlink -f "$BRIDLE")" ]] || die "pid $bpid runs '$exe', not $BRIDLE"
    sleep 0.3
    idle=$(rss_kib "$bpid" VmRSS)
    touch "$WORK/markers/go"
    wait_marker held "$held_wait" || echo "$BENCH: the hold client never reported its connections held" >&2
    sleep 1
    held=$(rss_kib "$bpid" VmRSS) hwm=$(rss_kib "$bpid" VmHWM)
    fds=$(ls "/proc/$bpid/fd" 2>/dev/null | wc -l)
    threads=$(awk '$1 == "Threads:" {print $2}' "/proc/$bpid/status")
    touch "$WORK/markers/release"
    wait_marker closed "$closed_wait" || true
    sleep 1
    closed=$(rss_kib "$bpid" VmRSS)
    touch "$WORK/markers/done"
    printf '{"idle_kib": %s, "held_kib": %s, "hwm_kib": %s, "closed_kib": %s, "fds_held": %s, "threads": %s}\n' \
      "${idle:-null}" "${held:-null}" "${hwm:-null}" "${closed:-null}" "${fds:-null}" "${threads:-null}" >"$WORK/res/rss.json"
    echo "rss: $(cat "$WORK/res/rss.json")" >&2
  else
    echo "$BENCH: the hold client did not start: $(cat "$WORK/hold.err")" >&2
  fi
  for _ in $(seq 300); do kill -0 "$bpid" 2>/dev/null || break; sleep 0.1; done
  wait "$bpid" || echo "$BENCH: bridle run (hold) exited $?: $(tail -3 "$WORK/hold.err")" >&2
  BRIDLES=()
  keep hold "$(cat "$WORK/hold.out")" || true
}

# The floor (scripts/bench/relay.c): a minimal splice relay, built with the
# host's C compiler into WORK once. `bench_relay PORT ADDR UPSTREAM_PORT`
# starts one in the namespace on 127.0.0.1:PORT, relaying to ADDR:UPSTREAM_PORT.
# Without a C compiler the floor is left out (FLOOR=0) and a note says so.
FLOOR=1
bench_relay() {
  local port=$1 addr=$2 upstream_port=$3 ready
  ((FLOOR)) || return 0
  if [[ ! -x $WORK/relay ]]; then
    if ! cc -O2 -o "$WORK/relay" scripts/bench/relay.c 2>"$WORK/relay.cc.log"; then
      FLOOR=0
      NOTES+=("no floor: scripts/bench/relay.c did not build with cc ($(head -1 "$WORK/relay.cc.log"); apt-get install gcc)")
      echo "$BENCH: warning: ${NOTES[-1]}" >&2
      return 0
    fi
  fi
  ready=$WORK/relay.$port.ready
  nsenter --net="/run/netns/$NS" "$WORK/relay" 127.0.0.1 "$port" "$addr" "$upstream_port" "$ready" &
  PIDS+=($!)
  for _ in $(seq 100); do [[ -f $ready ]] && return 0; sleep 0.05; done
  die "the floor relay on port $port did not start"
}
