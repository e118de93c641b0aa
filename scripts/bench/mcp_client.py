"""The load side of scripts/bench-mcp.sh: raw JSON-RPC `tools/call`s to an
MCP server over stdio (a command it starts) or streamable HTTP (a URL),
timed one by one; prints one `RESULT {json}` line.

    mcp_client.py latency CALLS stdio CMD...    sequential calls: p50/p90/p99 in µs, calls/s
    mcp_client.py latency CALLS http URL
    mcp_client.py paired CALLS stdio CMD_A... -- CMD_B...   the same, to A and B in turns (A, B,
    mcp_client.py paired CALLS http URL_A -- URL_B          A, B, ...): both see the same moments
                                                            of a shared machine; also the median
                                                            of the per-pair differences B - A
    mcp_client.py load CALLS WINDOW stdio CMD...           WINDOW calls in flight (pipelined
    mcp_client.py load CALLS WINDOW http URL [WATCH_PID]   on stdio, WINDOW client processes
                                                            over HTTP): calls/s, and the RSS of
                                                            the stdio command or WATCH_PID
                                                            every tenth of the run
"""

import http.client
import json
import multiprocessing
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

WARMUP = 200
TEXT = "hello from the benchmark"


def call(id_: int) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": TEXT}}}
    ).encode()


def check(reply: dict, id_: int) -> None:
    if reply.get("id") != id_ or reply.get("result", {}).get("content", [{}])[0].get("text") != TEXT:
        raise SystemExit(f"unexpected answer to {id_}: {reply}")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Stdio:
    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = self.proc.pid
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
        self.send(json.dumps(init).encode())
        self.recv()
        self.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')

    def send(self, line: bytes) -> None:
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def recv(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the server closed its output")
        return json.loads(line)

    def call(self, id_: int) -> None:
        self.send(call(id_))
        check(self.recv(), id_)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=20)


class Http:
    def __init__(self, url: str, session: str | None = None) -> None:
        parts = urlparse(url)
        self.path = parts.path
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.session = session
        if session is None:
            init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
            self.post(json.dumps(init).encode())
            self.post(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')

    def post(self, body: bytes) -> dict | None:
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                   "mcp-protocol-version": "2025-11-25"}
        if self.session:
            headers["mcp-session-id"] = self.session
        self.conn.request("POST", self.path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        self.session = self.session or response.getheader("mcp-session-id")
        if response.status == 202:
            return None
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status}: {data[:200]!r}")
        return json.loads(data)

    def call(self, id_: int) -> None:
        check(self.post(call(id_)), id_)


def http_worker(url: str, session: str, first: int, calls: int, step: int) -> None:
    peer = Http(url, session)
    for i in range(first, calls, step):
        peer.call(i + 1)


def connect(argv: list[str]):
    return Stdio(argv[1:]) if argv[0] == "stdio" else Http(argv[1])


def warm(peer) -> None:
    for i in range(WARMUP):
        peer.call(1_000_000 + i)


def timed(peer, calls: int) -> tuple[list[int], float]:
    """Warms `peer` up, then times `calls` sequential calls (ns each) and the whole run (s)."""
    warm(peer)
    times = []
    started = time.perf_counter_ns()
    for i in range(calls):
        before = time.perf_counter_ns()
        peer.call(i + 1)
        times.append(time.perf_counter_ns() - before)
    return times, (time.perf_counter_ns() - started) / 1e9


def summary(times: list[int], total: float) -> dict:
    ordered = sorted(times)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
    return {"calls": len(times), "p50_us": at(0.50), "p90_us": at(0.90), "p99_us": at(0.99),
            "calls_per_s": len(times) / total}


def latency(calls: int, argv: list[str]) -> dict:
    peer = connect(argv)
    times, total = timed(peer, calls)
    if isinstance(peer, Stdio):
        peer.close()
    return summary(times, total)


def paired(calls: int, argv: list[str]) -> dict:
    kind, rest = argv[0], argv[1:]
    if "--" not in rest:
        raise SystemExit("paired: give A's and B's arguments separated by --")
    cut = rest.index("--")
    peers = [connect([kind, *rest[:cut]]), connect([kind, *rest[cut + 1:]])]
    for peer in peers:
        warm(peer)
    times = ([], [])
    for i in range(calls):
        for side, peer in enumerate(peers):
            before = time.perf_counter_ns()
            peer.call(i + 1)
            times[side].append(time.perf_counter_ns() - before)
    for peer in peers:
        if isinstance(peer, Stdio):
            peer.close()
    # Calls per second are not meaningful in turns; each side's sum of call times stands in.
    a, b = (summary(t, sum(t) / 1e9) for t in times)
    differences = sorted(tb - ta for ta, tb in zip(*times))
    return {"a": a, "b": b, "paired_added_p50_us": differences[len(differences) // 2] / 1000}


def load(calls: int, window: int, argv: list[str]) -> dict:
    watch = int(argv[2]) if argv[0] == "http" and len(argv) > 2 else None
    rss = []
    if argv[0] == "stdio":
        peer = Stdio(argv[1:])
        watch = peer.pid
        for i in range(WARMUP):
            peer.call(1_000_000 + i)
        rss.append(rss_kib(watch))
        started = time.perf_counter()

        def writer() -> None:
            for i in range(calls):
                while i - done[0] >= window:
                    time.sleep(0)
                peer.send(call(i + 1))

        done = [0]
        thread = threading.Thread(target=writer)
        thread.start()
        step = max(1, calls // 10)
        for n in range(calls):
            peer.recv()
            done[0] = n + 1
            if (n + 1) % step == 0:
                rss.append(rss_kib(watch))
        thread.join()
        elapsed = time.perf_counter() - started
        peer.close()
    else:
        # Processes, not threads: one Python client thread cannot make
        # requests faster than about one per 300 µs.
        first = Http(argv[1])
        for i in range(WARMUP):
            first.call(1_000_000 + i)
        rss.append(rss_kib(watch) if watch else 0)
        workers = [
            multiprocessing.Process(target=http_worker, args=(argv[1], first.session, k, calls, window))
            for k in range(window)
        ]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        while any(worker.is_alive() for worker in workers):
            time.sleep(0.2)
            if watch:
                rss.append(rss_kib(watch))
        elapsed = time.perf_counter() - started
        if any(worker.exitcode != 0 for worker in workers):
            raise SystemExit("a load worker failed")
        # Every tenth of the run, as the stdio side samples.
        if len(rss) > 11:
            rss = [rss[0]] + [rss[1 + (len(rss) - 2) * k // 9] for k in range(10)]
    return {"calls": calls, "window": window, "calls_per_s": calls / elapsed, "rss_kib": rss}


if __name__ == "__main__":
    if sys.argv[1] == "latency":
        result = latency(int(sys.argv[2]), sys.argv[3:])
    elif sys.argv[1] == "paired":
        result = paired(int(sys.argv[2]), sys.argv[3:])
    else:
        result = load(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
    print("RESULT " + json.dumps(result), flush=True)
