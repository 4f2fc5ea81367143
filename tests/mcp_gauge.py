"""A tiny stdio MCP server for the tests: one tool, ``read_gauge``.

Run as ``python mcp_gauge.py PIDFILE``; it writes its pid there so tests can check
that it is gone when the run that started it ends.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("gauge")


@server.tool()
def read_gauge(name: str) -> str:
    """Return the reading of a named gauge."""
    return f"gauge {name} reads 42"


if __name__ == "__main__":
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(str(os.getpid()))
    server.run("stdio")
