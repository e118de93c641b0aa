"""Bridle's example MCP server: a small notes store served over streamable
HTTP with the official MCP Python SDK, for compose.yaml. Agents reach it
only through Bridle's MCP gateway (http://127.0.0.1:18090/mcp/notes), which
decides every call; the default policies forbid MCP tools that write CI
configuration, so `write_note` to `.github/workflows/…` is refused there.
"""

import os

from mcp.server.mcpserver import MCPServer

NOTES = os.environ.get("NOTES_DIR", "/var/lib/notes")
os.makedirs(NOTES, exist_ok=True)

app = MCPServer("notes", version="1.0")


def _path(path: str) -> str:
    full = os.path.normpath(os.path.join(NOTES, path.lstrip("/")))
    if not full.startswith(NOTES + os.sep):
        raise ValueError(f"{path} is outside the notes directory")
    return full


@app.tool()
def list_notes() -> list[str]:
    """List the notes."""
    found = []
    for root, _, files in os.walk(NOTES):
        found += [os.path.relpath(os.path.join(root, f), NOTES) for f in files]
    return sorted(found)


@app.tool()
def read_note(path: str) -> str:
    """Read one note."""
    with open(_path(path), encoding="utf-8") as f:
        return f.read()


@app.tool()
def write_note(path: str, text: str) -> str:
    """Write one note, replacing it."""
    full = _path(path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", encoding="utf-8") as f:
        f.write(text)
    return f"wrote {len(text)} characters to {path}"


if __name__ == "__main__":
    # All interfaces of its own container: only Bridle, on the compose
    # network, can reach it.
    app.run(transport="streamable-http", host="0.0.0.0", port=int(os.environ.get("PORT", "8000")))
