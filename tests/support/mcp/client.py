"""A test MCP client on the official Python SDK, for tests/mcp_cli.rs and
tests/mcp_http_cli.rs: runs the steps given as JSON against the server command
after `--` (mcp.client.stdio), or the URL after `--streamable-http` or `--sse`
(mcp.client.streamable_http, mcp.client.sse), printing one JSON line per step
as it completes.

    client.py '[{"op":"list"},{"op":"call","name":"add","args":{"a":1,"b":2}}]' -- bridle mcp wrap ...
    client.py '[{"op":"list"}]' --streamable-http http://127.0.0.1:18090/mcp/demo

Steps: {"op":"list"} -> {"tools":[names]}; {"op":"call","name":..,"args":..,
"timeout":secs,"progress":bool} -> {"text":first text (up to 200 chars),"length":total text
length,"is_error":bool,"progress":[messages seen]}; {"op":"read","uri":..} and {"op":"prompt","name":..,
"args":..} -> {"text":..}. A failed step gives {"error":{"code","message",
"data"}} or {"exception":"..."}.
"""

import json
import sys
from contextlib import asynccontextmanager

import anyio
import httpx2
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client


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
        seen = []

        async def progress(done, total, message):
            seen.append(message)

        result = await session.call_tool(
            spec["name"],
            spec.get("args", {}),
            read_timeout_seconds=spec.get("timeout"),
            progress_callback=progress if spec.get("progress") else None,
        )
        texts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
        text = "".join(texts)
        return {"text": text[:200], "length": len(text), "is_error": bool(result.is_error), "progress": seen}
    except MCPError as error:
        return {"error": {"code": error.code, "message": error.message, "data": error.data}}
    except Exception as error:  # noqa: BLE001 - the test wants to see anything else
        return {"exception": f"{type(error).__name__}: {error}"}


@asynccontextmanager
async def transport(argv: list[str]):
    if argv[0] == "--streamable-http":
        # Large results may come as one event: no cap on its size.
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=300)) as http:
            async with streamable_http_client(argv[1], http_client=http, max_sse_event_size=None) as streams:
                yield streams
    elif argv[0] == "--sse":
        async with sse_client(argv[1]) as streams:
            yield streams
    else:
        command = argv[1:]
        async with stdio_client(StdioServerParameters(command=command[0], args=command[1:])) as streams:
            yield streams


async def main() -> None:
    steps = json.loads(sys.argv[1])
    try:
        # A test whose session hangs fails instead of holding CI.
        with anyio.fail_after(180):
            await session_steps(steps)
    except Exception as error:  # noqa: BLE001
        emit({"closed": f"{type(error).__name__}: {error}"})


async def session_steps(steps: list) -> None:
    async with transport(sys.argv[2:]) as (read, write):
        async with ClientSession(read, write) as session:
            info = await session.initialize()
            emit({"server": info.server_info.name, "protocol": info.protocol_version})
            for spec in steps:
                emit(await step(session, spec))


anyio.run(main)
