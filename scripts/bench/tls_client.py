"""The agent side of scripts/bench-tls.sh: one HTTPS client, run the same
way direct (straight to the upstream), guarded (`bridle run -- ...`, its
connects transparently intercepted) and through mitmproxy (an explicit
proxy: CONNECT, then TLS with mitmproxy's CA). Prints one line
`RESULT {json}` on stdout. Every loop is bounded in count and in time.

usage: tls_client.py [common options] MODE [options]   (see --help)

keepalive  one connection, sequential GETs of a small body: requests/s and
           per-request latency, over ROUNDS rounds (median requests/s)
newhost    per iteration a new connection + TLS handshake + one GET + close
           to a new server name (SNI) under the wildcard, and the same to
           one name already seen (new connection, known host)
download   one connection, GET of BYTES bytes REPS times: MB/s
hold       COUNT TLS connections opened (one GET each) and held, coordinated
           through marker files with the script (which samples RSS)

HTTP/1.1 is written and parsed here (no http.client): the client's own cost
per request stays small and identical in every configuration. ALPN offers
http/1.1 only. The issuer of the certificate the client saw is reported,
which tells intercepted (Bridle's or mitmproxy's CA) from not.
"""
import argparse
import os
import socket
import ssl
import sys
import time

from client import CpuMeter, dist_us, emit, mark, percentile, wait_for


class Http:
    """A keep-alive HTTP/1.1 connection over one TLS socket."""

    def __init__(self, a, name):
        raw = socket.create_connection(a.connect, timeout=10.0)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if a.proxy:
                target = f"{a.origin[0]}:{a.origin[1]}"
                raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                answer = b""
                while b"\r\n\r\n" not in answer:
                    more = raw.recv(4096)
                    if not more:
                        raise OSError("proxy closed during CONNECT")
                    answer += more
                if answer.split(b" ", 2)[1] != b"200":
                    raise OSError("CONNECT refused: " + answer.split(b"\r\n", 1)[0].decode(errors="replace"))
            self.sock = a.ctx.wrap_socket(raw, server_hostname=name)
        except BaseException:
            raw.close()
            raise
        self.host = name
        self.buf = b""

    def issuer(self):
        cert = self.sock.getpeercert() or {}
        fields = dict(kv for rdn in cert.get("issuer", ()) for kv in rdn)
        return fields.get("organizationName") or fields.get("commonName") or "?"

    def get(self, path, sink=None):
        """GET `path`; returns the body length. Bodies larger than 1 MiB
        are read into `sink` (a memoryview) and not kept."""
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            more = self.sock.recv(65536)
            if not more:
                raise OSError("connection closed before the response head")
            self.buf += more
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = head.split(b" ", 2)[1]
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if status != b"200" or length is None:
            raise OSError("unexpected response: " + head.split(b"\r\n", 1)[0].decode(errors="replace"))
        if len(self.buf) >= length:
            self.buf = self.buf[length:]
            return length
        left = length - len(self.buf)
        self.buf = b""
        if sink is None:
            sink = memoryview(bytearray(1 << 20))
        while left > 0:
            n = self.sock.recv_into(sink, min(left, len(sink)))
            if not n:
                raise OSError(f"connection closed with {left} bytes of the body missing")
            left -= n
        return length

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def meter(a):
    cpu = CpuMeter(a.parent_cpu or a.cpu_pid is not None)
    if a.cpu_pid is not None:
        cpu.ppid = a.cpu_pid
    return cpu


# --- keepalive ---------------------------------------------------------------


def run_keepalive(a):
    deadline = time.monotonic() + a.time_limit
    c = Http(a, a.name)
    issuer = c.issuer()
    lat, rounds, errors = [], [], 0
    for _ in range(a.warmup):
        c.get(a.path)
    cpu = meter(a)
    cpu.start()
    done = 0
    try:
        for _ in range(a.rounds):
            t_round, n = time.perf_counter(), 0
            for _ in range(a.count):
                if time.monotonic() > deadline:
                    break
                t0 = time.perf_counter_ns()
                c.get(a.path)
                lat.append(time.perf_counter_ns() - t0)
                n += 1
            if n:
                rounds.append(round(n / (time.perf_counter() - t_round), 1))
            done += n
    except OSError as e:
        errors += 1
        print(f"tls_client: {e}", file=sys.stderr)
    cpu_out = cpu.stop()
    c.close()
    if done and "parent_cpu_s" in cpu_out:
        cpu_out["parent_cpu_us_per_op"] = round(cpu_out["parent_cpu_s"] * 1e6 / done, 1)
    emit({"bench": "keepalive", "issuer": issuer, "done": done, "errors": errors, "rounds_rps": rounds,
          "rps": percentile(sorted(rounds), 0.5), "latency_us": dist_us(lat), "cpu": cpu_out})


# --- newhost -----------------------------------------------------------------


def one_connection(a, name):
    """New connection + handshake + one GET + close: (total, handshake) ns."""
    t0 = time.perf_counter_ns()
    c = Http(a, name)
    t1 = time.perf_counter_ns()
    try:
        c.get(a.path)
        t2 = time.perf_counter_ns()
        return t2 - t0, t1 - t0, c.issuer()
    finally:
        c.close()


def run_newhost(a):
    """New hosts and a known host alternate, so both see the same load."""
    deadline = time.monotonic() + a.time_limit
    out = {"bench": "newhost", "errors": 0}
    issuers = set()
    for i in range(a.warmup):
        issuers.add(one_connection(a, f"{a.prefix}-warm{i}.{a.domain}")[2])
    kinds = {"new_host": lambda i: f"{a.prefix}-{i}.{a.domain}", "known_host": lambda i: f"{a.prefix}-warm0.{a.domain}"}
    samples = {k: ([], []) for k in kinds}
    cpu_s = {k: 0.0 for k in kinds}
    cpu = meter(a)
    for i in range(a.count):
        if time.monotonic() > deadline:
            break
        for kind, name in kinds.items():
            cpu.start()
            try:
                t, h, issuer = one_connection(a, name(i))
            except OSError as e:
                out["errors"] += 1
                print(f"tls_client: {name(i)}: {e}", file=sys.stderr)
                continue
            cpu_s[kind] += cpu.stop().get("parent_cpu_s") or 0.0
            issuers.add(issuer)
            samples[kind][0].append(t)
            samples[kind][1].append(h)
    for kind, (total, hs) in samples.items():
        out[kind] = {"total_us": dist_us(total), "handshake_us": dist_us(hs),
                     "samples_us": [round(x / 1000) for x in total], "handshake_samples_us": [round(x / 1000) for x in hs]}
        if a.parent_cpu or a.cpu_pid is not None:
            out[kind]["cpu"] = {"parent_cpu_s": round(cpu_s[kind], 3),
                                "parent_cpu_us_per_op": round(cpu_s[kind] * 1e6 / max(1, len(total)), 1)}
    out["issuer"] = ",".join(sorted(issuers))
    emit(out)


# --- download ----------------------------------------------------------------


def run_download(a):
    deadline = time.monotonic() + a.time_limit
    c = Http(a, a.name)
    issuer = c.issuer()
    sink = memoryview(bytearray(1 << 20))
    runs = []
    cpu = meter(a)
    cpu.start()
    moved = 0
    try:
        for _ in range(a.reps):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            got = c.get(f"/bytes/{a.bytes}", sink)
            elapsed = time.perf_counter() - t0
            moved += got
            runs.append({"bytes": got, "seconds": round(elapsed, 4), "mb_s": round(got / elapsed / 1e6, 1)})
    except OSError as e:
        print(f"tls_client: {e}", file=sys.stderr)
    cpu_out = cpu.stop()
    c.close()
    if moved and "parent_cpu_s" in cpu_out:
        cpu_out["parent_cpu_s_per_gib"] = round(cpu_out["parent_cpu_s"] * (1 << 30) / moved, 3)
    emit({"bench": "download", "issuer": issuer, "bytes": a.bytes, "runs": runs,
          "mb_s": percentile(sorted(r["mb_s"] for r in runs), 0.5), "complete": len(runs) == a.reps,
          "cpu": cpu_out})


# --- hold --------------------------------------------------------------------


def run_hold(a):
    mark(a.markers, "idle")
    wait_for(os.path.join(a.markers, "go"), 10.0)
    conns, errors, issuers = [], 0, set()
    t0 = time.perf_counter()
    deadline = time.monotonic() + a.time_limit
    for _ in range(a.count):
        if time.monotonic() > deadline:
            break
        try:
            c = Http(a, a.name)
            c.get(a.path)
        except OSError as e:
            errors += 1
            if errors <= 3:
                print(f"tls_client: {e}", file=sys.stderr)
            continue
        if len(conns) < 3:
            issuers.add(c.issuer())
        conns.append(c)
    opened = time.perf_counter() - t0
    mark(a.markers, "held", {"open": len(conns)})
    wait_for(os.path.join(a.markers, "release"), a.hold_max)
    # Every held connection still answers: nothing was dropped meanwhile.
    alive = 0
    for c in conns:
        try:
            c.get(a.path)
            alive += 1
        except OSError:
            pass
        c.close()
    mark(a.markers, "closed")
    wait_for(os.path.join(a.markers, "done"), 10.0)
    emit({"bench": "hold", "issuer": ",".join(sorted(issuers)), "requested": a.count, "open": len(conns),
          "alive_after": alive, "errors": errors, "open_s": round(opened, 3)})


def addr(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connect", type=addr, required=True, help="where the TCP connection goes (ADDR:PORT)")
    p.add_argument("--proxy", action="store_true", help="--connect is an HTTP proxy: CONNECT to --origin first")
    p.add_argument("--origin", type=addr, default=("198.51.100.7", 443), help="the CONNECT target")
    p.add_argument("--cafile", help="CA bundle to trust; env:NAME reads the path from $NAME")
    p.add_argument("--parent-cpu", action="store_true", help="report the parent process's CPU time")
    p.add_argument("--cpu-pid", type=int, help="report this process's CPU time (mitmproxy)")
    sub = p.add_subparsers(dest="mode", required=True)
    ka = sub.add_parser("keepalive")
    ka.add_argument("--name", default="bench.test")
    ka.add_argument("--path", default="/small")
    ka.add_argument("--count", type=int, default=5000, help="requests per round")
    ka.add_argument("--rounds", type=int, default=3)
    ka.add_argument("--warmup", type=int, default=200)
    ka.add_argument("--time-limit", type=float, default=60.0)
    nh = sub.add_parser("newhost")
    nh.add_argument("--domain", default="bench.test")
    nh.add_argument("--prefix", required=True, help="makes this run's names unique")
    nh.add_argument("--path", default="/small")
    nh.add_argument("--count", type=int, default=500)
    nh.add_argument("--warmup", type=int, default=20)
    nh.add_argument("--time-limit", type=float, default=60.0)
    dl = sub.add_parser("download")
    dl.add_argument("--name", default="bench.test")
    dl.add_argument("--bytes", type=int, default=1 << 30)
    dl.add_argument("--reps", type=int, default=3)
    dl.add_argument("--time-limit", type=float, default=240.0)
    hold = sub.add_parser("hold")
    hold.add_argument("--name", default="hold.bench.test")
    hold.add_argument("--path", default="/small")
    hold.add_argument("--count", type=int, default=1000)
    hold.add_argument("--markers", required=True)
    hold.add_argument("--time-limit", type=float, default=60.0)
    hold.add_argument("--hold-max", type=float, default=30.0)
    a = p.parse_args()
    cafile = a.cafile
    if cafile and cafile.startswith("env:"):
        cafile = os.environ.get(cafile[4:])
        if not cafile:
            sys.exit(f"tls_client: ${a.cafile[4:]} is not set")
    a.ctx = ssl.create_default_context(cafile=cafile)
    a.ctx.set_alpn_protocols(["http/1.1"])
    {"keepalive": run_keepalive, "newhost": run_newhost, "download": run_download, "hold": run_hold}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
