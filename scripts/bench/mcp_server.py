"""A minimal MCP server for scripts/bench-mcp.sh: just enough protocol
(initialize, tools/list, tools/call of one `echo` tool) to measure what
Bridle's gateway adds, with as little server time of its own as possible.

    mcp_server.py stdio           newline-delimited JSON-RPC on stdin/stdout
    mcp_server.py http PORT       streamable HTTP on 127.0.0.1:PORT/mcp, JSON answers
                                  (start several on one PORT for more throughput)
"""

import asyncio
import json
import socket
import sys

TOOLS = {
    "tools": [
        {
            "name": "echo",
            "description": "Echo the text back.",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
        }
    ]
}


def answer(message: dict):
    if "id" not in message or "method" not in message:
        return None
    method = message["method"]
    if method == "initialize":
        result = {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bench", "version": "1"},
        }
    elif method == "tools/list":
        result = TOOLS
    elif method == "tools/call":
        text = message.get("params", {}).get("arguments", {}).get("text", "")
        result = {"content": [{"type": "text", "text": text}]}
    else:
        result = {}
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


def stdio() -> None:
    out = sys.stdout
    for line in sys.stdin:
        if line.strip():
            reply = answer(json.loads(line))
            if reply is not None:
                out.write(json.dumps(reply) + "\n")
                out.flush()


async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep-alive HTTP/1.1, just what the benchmark sends: POSTs with a
    content-length. asyncio, not http.server: a thread per connection could
    not keep up with the gateway."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            message = json.loads(await reader.readexactly(length))
            reply = answer(message)
            if reply is None:
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            else:
                data = json.dumps(reply).encode()
                session = b"mcp-session-id: bench-session\r\n" if message.get("method") == "initialize" else b""
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + session
                             + b"content-length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    # reuse_port: several of these processes can share the port, the kernel
    # spreading connections among them.
    server = await asyncio.start_server(connection, "127.0.0.1", port, backlog=1024, reuse_port=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        stdio()
    else:
        asyncio.run(serve(int(sys.argv[2])))
