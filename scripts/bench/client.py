"""The agent side of scripts/bench-egress.sh. Runs the same way unguarded
(straight in the benchmark namespace) and guarded (`bridle run -- ...`), and
prints one line `RESULT {json}` on stdout. Every loop is bounded in count
and in time and stops by itself.

usage: client.py MODE [options]   (see --help of each mode)

latency     sequential connect + 1-byte request/response + close
throughput  one TCP stream up (client -> server) and one down, each BYTES
hold        COUNT concurrent connections held open, coordinated through
            marker files with the script (which samples Bridle's RSS)
dns         sequential queries (latency), then a sliding window of queries
            in flight on a few sockets for SECONDS (throughput)

With --parent-cpu, the CPU time of the parent process (Bridle, when run
guarded) and of the whole machine over the measured phase is reported too.
"""
import argparse
import json
import os
import random
import select
import socket
import struct
import sys
import time

NS = 1e-9


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


def dist_us(samples_ns):
    s = sorted(samples_ns)
    pick = lambda q: None if not s else round(percentile(s, q) / 1000.0, 2)  # noqa: E731
    return {"n": len(s), "p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": pick(1.0)}


class CpuMeter:
    """CPU seconds of the parent process and busy/total jiffies of the host."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.ppid = os.getppid()
        self.tick = os.sysconf("SC_CLK_TCK")

    def _parent(self):
        try:
            with open(f"/proc/{self.ppid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / self.tick
        except (OSError, IndexError, ValueError):
            return None

    @staticmethod
    def _host():
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
        idle = cpu[3] + cpu[4]
        return sum(cpu) - idle, sum(cpu)

    def start(self):
        self.t0 = time.perf_counter()
        self.p0 = self._parent() if self.enabled else None
        self.h0 = self._host()

    def stop(self):
        wall = time.perf_counter() - self.t0
        busy, total = self._host()
        out = {"wall_s": round(wall, 3), "host_busy": round((busy - self.h0[0]) / max(1, total - self.h0[1]), 3)}
        if self.enabled:
            try:
                with open(f"/proc/{self.ppid}/comm") as f:
                    out["parent"] = f.read().strip()
            except OSError:
                pass
            p1 = self._parent()
            if self.p0 is not None and p1 is not None:
                out["parent_cpu_s"] = round(p1 - self.p0, 3)
        return out


def emit(result):
    print("RESULT " + json.dumps(result), flush=True)


# --- latency -----------------------------------------------------------------


def run_latency(a):
    dst = (a.addr, a.port)
    connect_ns, ttfb_ns, errors = [], [], 0
    cpu = CpuMeter(a.parent_cpu)
    deadline = time.monotonic() + a.time_limit
    done = 0
    for i in range(a.warmup + a.count):
        if time.monotonic() > deadline:
            break
        if i == a.warmup:
            cpu.start()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(3.0)
        try:
            t0 = time.perf_counter_ns()
            s.connect(dst)
            t1 = time.perf_counter_ns()
            s.sendall(b"p")
            got = s.recv(1)
            t2 = time.perf_counter_ns()
            if got != b"!":
                raise OSError("no answer")
            if i >= a.warmup:
                connect_ns.append(t1 - t0)
                ttfb_ns.append(t2 - t0)
                done += 1
        except OSError:
            errors += 1
        finally:
            s.close()
    cpu_out = cpu.stop() if done else {}
    if done and "parent_cpu_s" in cpu_out:
        cpu_out["parent_cpu_us_per_op"] = round(cpu_out["parent_cpu_s"] * 1e6 / done, 1)
    emit({"bench": "latency", "connect_us": dist_us(connect_ns), "ttfb_us": dist_us(ttfb_ns), "errors": errors,
          "requested": a.count, "done": done, "cpu": cpu_out})


# --- throughput --------------------------------------------------------------


def upload(dst, size, deadline):
    # Zeros, as a file's bytes would be: a run of letters with no line end
    # after the command byte is what a request line sent in pieces looks
    # like, and an inspecting proxy holds such a line back (up to a bound).
    chunk = memoryview(bytes(1 << 20))
    s = socket.create_connection(dst, timeout=10.0)
    sent = 0
    try:
        t0 = time.perf_counter()
        s.sendall(b"u")
        while sent < size and time.monotonic() < deadline:
            n = min(size - sent, len(chunk))
            s.sendall(chunk[:n])
            sent += n
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while len(answer) < 8:
            more = s.recv(8 - len(answer))
            if not more:
                raise OSError("server closed before the byte count")
            answer += more
        elapsed = time.perf_counter() - t0
    finally:
        s.close()
    (received,) = struct.unpack("!Q", answer)
    return {"bytes": received, "seconds": round(elapsed, 4), "mb_s": round(received / elapsed / 1e6, 1),
            "complete": received == size}


def download(dst, size, deadline):
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    s = socket.create_connection(dst, timeout=10.0)
    got = 0
    try:
        t0 = time.perf_counter()
        s.sendall(b"d" + struct.pack("!Q", size))
        while got < size and time.monotonic() < deadline:
            n = s.recv_into(view)
            if not n:
                break
            got += n
        elapsed = time.perf_counter() - t0
    finally:
        s.close()
    return {"bytes": got, "seconds": round(elapsed, 4), "mb_s": round(got / elapsed / 1e6, 1), "complete": got == size}


def run_throughput(a):
    dst = (a.addr, a.port)
    deadline = time.monotonic() + a.time_limit
    runs = {"up": [], "down": []}
    cpu = CpuMeter(a.parent_cpu)
    cpu.start()
    moved = 0
    for _ in range(a.reps):
        for name, fn in (("up", upload), ("down", download)):
            if time.monotonic() > deadline:
                break
            r = fn(dst, a.bytes, deadline)
            moved += r["bytes"]
            runs[name].append(r)
    cpu_out = cpu.stop()
    if moved and "parent_cpu_s" in cpu_out:
        cpu_out["parent_cpu_s_per_gib"] = round(cpu_out["parent_cpu_s"] * (1 << 30) / moved, 3)
    out = {"bench": "throughput", "bytes": a.bytes, "runs": runs, "cpu": cpu_out}
    for name, rs in runs.items():
        speeds = sorted(r["mb_s"] for r in rs)
        out[name + "_mb_s"] = percentile(speeds, 0.5)
        out[name + "_complete"] = all(r["complete"] for r in rs) and bool(rs)
    emit(out)


# --- hold --------------------------------------------------------------------


def wait_for(path, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.02)
    return False


def mark(directory, name, payload=None):
    tmp = os.path.join(directory, "." + name)
    with open(tmp, "w") as f:
        f.write(json.dumps(payload or {}) + "\n")
    os.rename(tmp, os.path.join(directory, name))


def run_hold(a):
    dst = (a.addr, a.port)
    mark(a.markers, "idle")
    wait_for(os.path.join(a.markers, "go"), 10.0)
    socks, errors = [], 0
    t0 = time.perf_counter()
    deadline = time.monotonic() + a.time_limit
    for _ in range(a.count):
        if time.monotonic() > deadline:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5.0)
        try:
            s.connect(dst)
            s.sendall(b"h")
            socks.append(s)
        except OSError:
            errors += 1
            s.close()
    opened = time.perf_counter() - t0
    # Every connection answered once: all of them are spliced end to end.
    answered = 0
    pending = {s.fileno(): s for s in socks}
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN)
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(200):
            s = pending.pop(fd, None)
            if s is None:
                continue
            poller.unregister(fd)
            try:
                if s.recv(1) == b"!":
                    answered += 1
            except OSError:
                errors += 1
    all_up = time.perf_counter() - t0
    mark(a.markers, "held", {"open": len(socks), "answered": answered})
    wait_for(os.path.join(a.markers, "release"), a.hold_max)
    for s in socks:
        s.close()
    mark(a.markers, "closed")
    wait_for(os.path.join(a.markers, "done"), 10.0)
    emit({"bench": "hold", "requested": a.count, "open": len(socks), "answered": answered, "errors": errors,
          "open_s": round(opened, 3), "all_answered_s": round(all_up, 3)})


# --- dns ---------------------------------------------------------------------


def encode_name(name):
    return b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"


def run_dns(a):
    dst = (a.server, a.port)
    tail = struct.pack("!HHHHH", 0x0100, 1, 0, 0, 0) + encode_name(a.name) + struct.pack("!HH", 1, 1)
    cpu = CpuMeter(a.parent_cpu)
    out = {"bench": "dns", "server": f"{a.server}:{a.port}", "name": a.name}

    # Sequential: one query in flight, per-query latency.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(dst)
    s.settimeout(1.0)
    lat, lost, bad = [], 0, 0
    deadline = time.monotonic() + a.seq_seconds
    for i in range(a.warmup + a.seq_count):
        if time.monotonic() > deadline:
            break
        qid = i & 0xFFFF
        t0 = time.perf_counter_ns()
        s.send(struct.pack("!H", qid) + tail)
        try:
            while True:
                reply = s.recv(512)
                if reply[:2] == struct.pack("!H", qid):
                    break
        except socket.timeout:
            lost += 1
            continue
        t1 = time.perf_counter_ns()
        # NOERROR with one answer: a real (cached) answer, not a refusal.
        if len(reply) < 12 or reply[3] & 0x0F != 0 or struct.unpack("!H", reply[6:8])[0] < 1:
            bad += 1
        if i >= a.warmup:
            lat.append(t1 - t0)
    s.close()
    out["sequential"] = {"latency_us": dist_us(lat), "lost": lost, "bad": bad}
    if lat:
        out["sequential"]["qps"] = round(len(lat) / (sum(lat) * NS), 0)

    # Throughput: a sliding window of queries in flight over a few sockets.
    socks = []
    for _ in range(a.sockets):
        q = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        q.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        q.connect(dst)
        q.setblocking(False)
        socks.append(q)
    poller = select.poll()
    by_fd = {q.fileno(): q for q in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    sent_at = {}  # (fd, qid) -> ns
    next_id = {fd: random.randrange(0x10000) for fd in by_fd}
    answered, wlat, wbad, sent = 0, [], 0, 0
    per_socket = max(1, a.window // len(socks))

    def send_one(fd):
        nonlocal sent
        qid = next_id[fd]
        next_id[fd] = (qid + 1) & 0xFFFF
        sent_at[(fd, qid)] = time.perf_counter_ns()
        by_fd[fd].send(struct.pack("!H", qid) + tail)
        sent += 1

    cpu.start()
    t_start = time.perf_counter()
    end = time.monotonic() + a.seconds
    for fd in by_fd:
        for _ in range(per_socket):
            send_one(fd)
    last_progress = time.monotonic()
    while True:
        now = time.monotonic()
        if now > end:
            break
        events = poller.poll(100)
        if not events:
            # Lost datagrams (dropped under load): forget them and refill.
            if now - last_progress > 0.5:
                sent_at.clear()
                for fd in by_fd:
                    for _ in range(per_socket):
                        send_one(fd)
                last_progress = now
            continue
        for fd, _ in events:
            sock = by_fd[fd]
            while True:
                try:
                    reply = sock.recv(512)
                except BlockingIOError:
                    break
                t1 = time.perf_counter_ns()
                (qid,) = struct.unpack("!H", reply[:2])
                t0 = sent_at.pop((fd, qid), None)
                if t0 is None:
                    continue
                answered += 1
                if len(wlat) < 200_000:
                    wlat.append(t1 - t0)
                if reply[3] & 0x0F != 0:
                    wbad += 1
                last_progress = time.monotonic()
                try:
                    send_one(fd)
                except BlockingIOError:
                    pass
    elapsed = time.perf_counter() - t_start
    cpu_out = cpu.stop()
    for q in socks:
        q.close()
    if answered and "parent_cpu_s" in cpu_out:
        cpu_out["parent_cpu_us_per_query"] = round(cpu_out["parent_cpu_s"] * 1e6 / answered, 1)
    out["window"] = {"in_flight": per_socket * len(socks), "sockets": len(socks), "seconds": round(elapsed, 3),
                     "sent": sent, "answered": answered, "bad": wbad, "qps": round(answered / elapsed, 0),
                     "latency_us": dist_us(wlat), "cpu": cpu_out}
    emit(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parent-cpu", action="store_true", help="report the parent process's CPU time")
    sub = p.add_subparsers(dest="mode", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--addr", required=True)
    lat.add_argument("--port", type=int, required=True)
    lat.add_argument("--count", type=int, default=2000)
    lat.add_argument("--warmup", type=int, default=100)
    lat.add_argument("--time-limit", type=float, default=30.0)
    thr = sub.add_parser("throughput")
    thr.add_argument("--addr", required=True)
    thr.add_argument("--port", type=int, required=True)
    thr.add_argument("--bytes", type=int, default=1 << 30)
    thr.add_argument("--reps", type=int, default=1)
    thr.add_argument("--time-limit", type=float, default=120.0)
    hold = sub.add_parser("hold")
    hold.add_argument("--addr", required=True)
    hold.add_argument("--port", type=int, required=True)
    hold.add_argument("--count", type=int, default=1000)
    hold.add_argument("--markers", required=True)
    hold.add_argument("--time-limit", type=float, default=30.0)
    hold.add_argument("--hold-max", type=float, default=20.0)
    dns = sub.add_parser("dns")
    dns.add_argument("--server", required=True)
    dns.add_argument("--port", type=int, default=53)
    dns.add_argument("--name", default="allowed.test")
    dns.add_argument("--seq-count", type=int, default=5000)
    dns.add_argument("--seq-seconds", type=float, default=10.0)
    dns.add_argument("--warmup", type=int, default=200)
    dns.add_argument("--seconds", type=float, default=5.0)
    dns.add_argument("--window", type=int, default=64)
    dns.add_argument("--sockets", type=int, default=4)
    a = p.parse_args()
    {"latency": run_latency, "throughput": run_throughput, "hold": run_hold, "dns": run_dns}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
