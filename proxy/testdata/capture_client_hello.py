#!/usr/bin/env python3
"""Records the first TLS record a real client sends: how the ClientHellos in
this directory were captured.

    python3 capture_client_hello.py OUT.bin &
    openssl s_client -connect 127.0.0.1:<printed port> -servername api.example.test </dev/null

The listener reads until one whole TLS record has arrived (the record header
says how long it is), writes exactly those bytes, and closes."""
import socket
import sys


def main() -> None:
    out = sys.argv[1]
    with socket.create_server(("127.0.0.1", 0)) as srv:
        print(srv.getsockname()[1], flush=True)
        conn, _ = srv.accept()
        with conn:
            data = b""
            while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
    with open(out, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
