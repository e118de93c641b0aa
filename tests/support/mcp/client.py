"""A test MCP client on the official Python SDK (mcp.client.stdio), for
tests/mcp_cli.rs: runs the steps given as JSON against the server command
after `--`, printing one JSON line per step as it completes.

    client.py '[{"op":"list"},{"op":"call","name":"add","args":{"a":1,"b":2}}]' -- bridle mcp wrap ...

Steps: {"op":"list"} -> {"tools":[names]}; {"op":"call","name":..,"args":..,
"timeout":secs} -> {"text":first text (up to 200 chars),"length":total text
length,"is_error":bool}; {"op":"read","uri":..} and {"op":"prompt","name":..,
"args":..} -> {"text":..}. A failed step gives {"error":{"code","message",
"data"}} or {"exception":"..."}.
"""

import json
import sys

import anyio
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client


def emit(result: dict) -> None:
    print(json.dumps(result), flush=True)


async def step(session: ClientSession, spec: dict) -> dict:
    try:
        if spec["op"] == "list":
            listed = await session.list_tools()
            return {"tools": [tool.name for tool in listed.tools]}
        if spec["op"] == "read":
            read = await session.read_resource(spec["uri"])
            return {"text": read.contents[0].text}
        if spec["op"] == "prompt":
            got = await session.get_prompt(spec["name"], spec.get("args", {}))
            return {"text": got.messages[0].content.text}
        result = await session.call_tool(spec["name"], spec.get("args", {}), read_timeout_seconds=spec.get("timeout"))
        texts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
        text = "".join(texts)
        return {"text": text[:200], "length": len(text), "is_error": bool(result.is_error)}
    except MCPError as error:
        return {"error": {"code": error.code, "message": error.message, "data": error.data}}
    except Exception as error:  # noqa: BLE001 - the test wants to see anything else
        return {"exception": f"{type(error).__name__}: {error}"}


async def main() -> None:
    steps = json.loads(sys.argv[1])
    command = sys.argv[sys.argv.index("--") + 1 :]
    params = StdioServerParameters(command=command[0], args=command[1:])
    try:
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                info = await session.initialize()
                emit({"server": info.server_info.name, "protocol": info.protocol_version})
                for spec in steps:
                    emit(await step(session, spec))
    except Exception as error:  # noqa: BLE001
        emit({"closed": f"{type(error).__name__}: {error}"})


anyio.run(main)
