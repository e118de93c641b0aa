"""The "internet" side of scripts/bench-egress.sh: three TCP services on one
address, run inside the benchmark's network namespace.

usage: server.py ADDR PING_PORT DATA_PORT HOLD_PORT READY_FILE

PING_PORT  one connection at a time: read 1 byte, answer 1 byte, close
           (connect latency and time to first byte).
DATA_PORT  one thread per connection; the first byte says what to do:
           b"u": read until EOF, then answer the byte count (8 bytes, big endian);
           b"d" + 8-byte size: send that many bytes, then close.
HOLD_PORT  many connections held open by one selector thread: every byte
           received is answered with b"!"; EOF closes.

The bytes chosen (lowercase letters) are not the start of an HTTP method or
a TLS record, so Bridle's proxy classifies them as opaque at once instead of
waiting for more. Every socket has a timeout: nothing here waits forever.
The process runs until it is killed (the benchmark's trap does that).
"""
import selectors
import socket
import struct
import sys
import threading

CHUNK = 1 << 20
IDLE = 30.0  # seconds a data connection may stay silent


def listener(addr, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, port))
    sock.listen(4096)
    return sock


def serve_ping(sock):
    while True:
        conn, _ = sock.accept()
        try:
            conn.settimeout(2.0)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if conn.recv(1):
                conn.sendall(b"!")
        except OSError:
            pass
        finally:
            conn.close()


def data_connection(conn):
    try:
        conn.settimeout(IDLE)
        cmd = conn.recv(1)
        if cmd == b"u":
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            total = 0
            while True:
                n = conn.recv_into(view)
                if not n:
                    break
                total += n
            conn.sendall(struct.pack("!Q", total))
        elif cmd == b"d":
            header = b""
            while len(header) < 8:
                more = conn.recv(8 - len(header))
                if not more:
                    return
                header += more
            (size,) = struct.unpack("!Q", header)
            chunk = memoryview(b"x" * CHUNK)
            while size > 0:
                n = conn.send(chunk[: min(size, CHUNK)])
                size -= n
    except OSError:
        pass
    finally:
        conn.close()


def serve_data(sock):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=data_connection, args=(conn,), daemon=True).start()


def serve_hold(sock):
    sel = selectors.DefaultSelector()
    sock.setblocking(False)
    sel.register(sock, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select(timeout=1.0):
            if key.data is None:
                try:
                    while True:
                        conn, _ = sock.accept()
                        conn.setblocking(False)
                        sel.register(conn, selectors.EVENT_READ, "conn")
                except BlockingIOError:
                    pass
                continue
            conn = key.fileobj
            try:
                data = conn.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                try:
                    conn.send(b"!" * len(data))
                except OSError:
                    pass
            else:
                sel.unregister(conn)
                conn.close()


def main():
    addr = sys.argv[1]
    ping, data, hold = (int(p) for p in sys.argv[2:5])
    ready = sys.argv[5]
    threading.stack_size(512 * 1024)
    socks = [(serve_ping, listener(addr, ping)), (serve_data, listener(addr, data)), (serve_hold, listener(addr, hold))]
    for target, sock in socks:
        threading.Thread(target=target, args=(sock,), daemon=True).start()
    with open(ready, "w") as f:
        f.write("ready\n")
    threading.Event().wait()


if __name__ == "__main__":
    main()
