"""The Docker suite's "internet": one container on the suite's internal
network that is both the DNS authority for `*.test` (every name resolves to
this container) and the HTTPS/HTTP server behind those names, with a
certificate from the suite's own test CA. Standard library only.

Every HTTP request is answered with JSON describing it (method, host, path,
headers, and each header value's SHA-256), so the suite can see what Bridle
forwarded: an injected credential arrives (its digest), while the agent
reads its placeholder where the answer repeats it.
"""

import hashlib
import json
import socket
import socketserver
import ssl
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADDRESS = sys.argv[1]  # this container's address: the answer to every A query
CERT, KEY = sys.argv[2], sys.argv[3]


def answer(query: bytes) -> bytes:
    """One DNS response: A for *.test, an empty NOERROR for other types of
    *.test names, NXDOMAIN for everything else; authoritative."""
    if len(query) < 12:
        return b""
    (qid,) = struct.unpack("!H", query[:2])
    i, labels = 12, []
    while i < len(query) and query[i] != 0:
        n = query[i]
        labels.append(query[i + 1 : i + 1 + n].decode("ascii", "replace").lower())
        i += 1 + n
    question = query[12 : i + 5]
    qtype = struct.unpack("!H", query[i + 1 : i + 3])[0] if i + 3 <= len(query) else 0
    name = ".".join(labels)
    ours = name == "test" or name.endswith(".test")
    rcode = 0 if ours else 3
    answers = b""
    if ours and qtype == 1:
        answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton(ADDRESS)
    flags = 0x8400 | rcode  # QR, AA
    header = struct.pack("!HHHHHH", qid, flags, 1, 1 if answers else 0, 0, 0)
    return header + question + answers


class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(answer(data), self.client_address)


class Tcp(socketserver.BaseRequestHandler):
    def handle(self):
        head = self.request.recv(2)
        if len(head) < 2:
            return
        (n,) = struct.unpack("!H", head)
        data = b""
        while len(data) < n:
            chunk = self.request.recv(n - len(data))
            if not chunk:
                return
            data += chunk
        reply = answer(data)
        self.request.sendall(struct.pack("!H", len(reply)) + reply)


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        out = json.dumps(
            {
                "method": self.command,
                "host": self.headers.get("host"),
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "headers_sha256": {k.lower(): hashlib.sha256(v.encode()).hexdigest() for k, v in self.headers.items()},
                "body_bytes": len(body),
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = reply

    def log_message(self, fmt, *args):
        print(f"upstream: {self.command} {self.headers.get('host')}{self.path}", flush=True)


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()


socketserver.ThreadingUDPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.allow_reuse_address = True
serve(socketserver.ThreadingUDPServer(("0.0.0.0", 53), Udp))
serve(socketserver.ThreadingTCPServer(("0.0.0.0", 53), Tcp))
serve(ThreadingHTTPServer(("0.0.0.0", 80), Echo))
tls = ThreadingHTTPServer(("0.0.0.0", 443), Echo)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
context.set_alpn_protocols(["http/1.1"])
tls.socket = context.wrap_socket(tls.socket, server_side=True)
print(f"upstream: DNS for *.test -> {ADDRESS}, HTTP :80, HTTPS :443", flush=True)
tls.serve_forever()
