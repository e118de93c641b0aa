"""How long a relaying thread works between reading a message and writing it
on: the user time between the exit of each `recvfrom` and the entry of the
next `writev`/`write`/`sendto` on another descriptor, from the kernel's
syscall tracepoints (`perf record -e raw_syscalls:*`, root).

Much steadier than end-to-end latency on a shared machine: it leaves out the
peers, the wake-ups and the loopback itself, and keeps what the relay does
with a message. Used to compare builds of the MCP gateway and the proxy.

    onpath.py TID SECONDS [PERF_DATA]

TID is the relaying thread (the MCP gateway's `bridle mcp serve` main
thread, or its `mcp-gateway` thread under `bridle run`; `ps -T -p PID`).
Drive traffic through it meanwhile; the recording stops by itself after
SECONDS. Prints, per (read descriptor -> write descriptor) pair, the number
of messages and the median and quartiles in µs, then the median time spent
inside the reads and the writes themselves.
"""

import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

READS = {0, 45, 47}  # read, recvfrom, recvmsg
WRITES = {1, 20, 44, 46}  # write, writev, sendto, sendmsg
ARGS = re.compile(r"NR (\d+) \((\w+),")
RETURN = re.compile(r"NR (\d+) = (-?\d+)")


def record(tid: str, seconds: float, out: Path) -> None:
    command = ["perf", "record", "-q", "-e", "raw_syscalls:sys_enter,raw_syscalls:sys_exit",
               "-t", tid, "-o", str(out), "--", "sleep", str(seconds)]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"perf record on thread {tid} failed (is it running, and are you root?): {done.stderr.strip()}")


def events(data: Path, tid: str):
    """(time s, 'enter'|'exit', syscall number, first argument or return value) of `tid`, in order."""
    script = subprocess.run(["perf", "script", "-i", str(data), "-F", "tid,time,event,trace"],
                            check=True, capture_output=True, text=True).stdout
    for line in script.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[0] != tid:
            continue
        when = float(fields[1].rstrip(":"))
        if "sys_enter" in fields[2]:
            match = ARGS.search(line)
            if match:
                yield when, "enter", int(match.group(1)), int(match.group(2), 16)
        else:
            match = RETURN.search(line)
            if match:
                yield when, "exit", int(match.group(1)), int(match.group(2))


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    tid, seconds = sys.argv[1], float(sys.argv[2])
    if shutil.which("perf") is None:
        raise SystemExit("onpath.py needs perf: apt-get install linux-perf (Debian) or linux-tools-generic (Ubuntu)")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(tmp) / "perf.data"
        record(tid, seconds, data)
        between: dict[tuple[int, int], list[float]] = {}
        inside = {"read": [], "write": []}
        entered = None  # (time, nr, fd) of the syscall in progress
        last_read = None  # (fd, exit time) of the last read that returned data
        for when, kind, nr, value in events(data, tid):
            if kind == "enter":
                fd = value
                entered = (when, nr, fd)
                if nr in WRITES and last_read is not None and last_read[0] != fd:
                    between.setdefault((last_read[0], fd), []).append((when - last_read[1]) * 1e6)
                    last_read = None
                continue
            if entered is None or entered[1] != nr:
                continue
            start, _, entered_fd = entered
            if nr in READS and value > 0:
                inside["read"].append((when - start) * 1e6)
                last_read = (entered_fd, when)
            elif nr in WRITES:
                inside["write"].append((when - start) * 1e6)
            entered = None
    if not between:
        raise SystemExit(f"no read followed by a write on another descriptor in thread {tid}")
    for (read_fd, write_fd), spans in sorted(between.items(), key=lambda kv: -len(kv[1])):
        if len(spans) < 10:
            continue
        q1, median, q3 = statistics.quantiles(spans, n=4)
        print(f"fd {read_fd} -> fd {write_fd}: {len(spans)} messages, user time median {median:.1f} µs "
              f"(quartiles {q1:.1f}, {q3:.1f})")
    for what, spans in inside.items():
        if spans:
            print(f"inside {what}s: median {statistics.median(spans):.1f} µs over {len(spans)}")


if __name__ == "__main__":
    main()
