"""The "internet" HTTPS server of scripts/bench-tls.sh, run inside the
benchmark's network namespace: HTTP/1.1 over TLS (ALPN http/1.1), one
thread per connection, keep-alive.

usage: tls_upstream.py ADDR PORT CERT_PEM KEY_PEM READY_FILE

GET /small      a 64-byte body
GET /bytes/N    N bytes (Content-Length), sent in 1 MiB writes
anything else   404

A request body (Content-Length) is read and dropped; `Connection: close`
closes after the answer. Deliberately minimal (no http.server): what is
measured is the TLS path in between, so the server's own per-request cost
is kept small and the same in every configuration. Every socket has a
timeout: nothing here waits forever. The process runs until it is killed
(the benchmark's trap does that).
"""
import socket
import ssl
import sys
import threading

IDLE = 120.0  # seconds a connection may stay silent (the hold phase idles)
CHUNK = 1 << 20
MAX_HEAD = 64 * 1024
SMALL = b"ok " + b"x" * 60 + b"\n"  # 64 bytes


def head(status, length):
    return (f"HTTP/1.1 {status}\r\nContent-Length: {length}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()


def serve(raw, ctx):
    try:
        raw.settimeout(IDLE)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = ctx.wrap_socket(raw, server_side=True)
    except (OSError, ssl.SSLError):
        raw.close()
        return
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                more = conn.recv(65536)
                if not more or len(buf) > MAX_HEAD:
                    return
                buf += more
            request, buf = buf.split(b"\r\n\r\n", 1)
            lines = request.split(b"\r\n")
            parts = lines[0].split(b" ")
            path = parts[1] if len(parts) == 3 else b""
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip() or 0)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            while length > 0:  # drop a request body
                if len(buf) >= length:
                    buf, length = buf[length:], 0
                    break
                length -= len(buf)
                buf = conn.recv(min(65536, length)) or b""
                if not buf:
                    return
            if path == b"/small":
                conn.sendall(head("200 OK", len(SMALL)) + SMALL)
            elif path.startswith(b"/bytes/"):
                size = int(path[7:] or 0)
                conn.sendall(head("200 OK", size))
                chunk = memoryview(b"x" * CHUNK)
                while size > 0:
                    n = min(size, CHUNK)
                    conn.sendall(chunk[:n])
                    size -= n
            else:
                conn.sendall(head("404 Not Found", 0))
            if close:
                return
    except (OSError, ssl.SSLError, ValueError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    addr, port, cert, key, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    threading.stack_size(256 * 1024)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, port))
    sock.listen(4096)
    with open(ready, "w") as f:
        f.write("ready\n")
    while True:
        raw, _ = sock.accept()
        threading.Thread(target=serve, args=(raw, ctx), daemon=True).start()


if __name__ == "__main__":
    main()
