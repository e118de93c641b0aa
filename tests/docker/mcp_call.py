"""One MCP session through Bridle's gateway over streamable HTTP, with the
standard library only (the agent image has no SDK): initialize, the
initialized notification, tools/list, then one tools/call. Prints one JSON
line: {"tools": [...], "call": <the tools/call response>}.

Usage: mcp_call.py URL TOOL JSON_ARGUMENTS
"""

import json
import sys
import urllib.request

URL, TOOL, ARGUMENTS = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
session = None


def post(message):
    global session
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-06-18",
    }
    if session:
        headers["mcp-session-id"] = session
    request = urllib.request.Request(URL, data=json.dumps(message).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=20) as response:
        session = response.headers.get("mcp-session-id") or session
        body = response.read().decode()
        if "id" not in message:
            return None
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            for line in body.splitlines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event.get("id") == message["id"]:
                        return event
            raise SystemExit(f"no response to {message['method']} in the event stream: {body!r}")
        return json.loads(body)


post({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}},
})
post({"jsonrpc": "2.0", "method": "notifications/initialized"})
tools = post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
call = post({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": TOOL, "arguments": ARGUMENTS}})
print(json.dumps({"tools": [t["name"] for t in tools["result"]["tools"]], "call": call}))
