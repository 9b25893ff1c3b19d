"""A small MCP server to try the replay server's MCP calls with: ``github`` stand-ins.

    python -m harmony_stream.serve.example_mcp [--port 8765]

Serves MCP over streamable HTTP at ``http://127.0.0.1:PORT/mcp`` (the `mcp`
SDK under uvicorn, this machine only). Its tools are the ones the bundled
transcripts call on the server labelled ``github``: ``search_issues`` (the
``mcp_call`` transcript) answers with made-up issues computed from its
arguments, so the answer shows it came from this server and not from the
transcript; ``get_latest_release`` (the ``mcp_failed`` transcript) always
fails, as a repository the connector cannot see. No network access, no data.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

__all__ = ["DEFAULT_PORT", "get_latest_release", "main", "search_issues", "server"]

DEFAULT_PORT = 8765


def search_issues(repo: str, query: str, per_page: int = 10) -> str:
    """Open issues of `repo` matching `query` (made up: a stand-in for GitHub's search)."""
    issues = [
        {
            "number": 100 + 7 * i,
            "title": f"{query} (example issue {i + 1} of {repo})",
            "state": "open",
            "url": f"https://github.com/{repo}/issues/{100 + 7 * i}",
        }
        for i in range(max(0, min(per_page, 100)))
    ]
    return json.dumps(issues)


def get_latest_release(repo: str) -> str:
    """The latest release of `repo`: always an error here (no repository is visible)."""
    raise ToolError(f"404 Not Found: repository {repo!r} is not visible to this example server")


def server() -> MCPServer:
    """The MCP server named ``github``, with both tools."""
    mcp = MCPServer(
        "github",
        instructions="Example GitHub tools for harmony-stream serve.",
        log_level="WARNING",
    )
    mcp.add_tool(search_issues)
    mcp.add_tool(get_latest_release)
    return mcp


def main(argv: Sequence[str] | None = None) -> int:
    """Serves `server()` on 127.0.0.1 until interrupted."""
    ap = argparse.ArgumentParser(
        prog="python -m harmony_stream.serve.example_mcp",
        description="An example MCP server (label github: search_issues, "
        "get_latest_release) on http://127.0.0.1:PORT/mcp, for harmony-stream serve.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help="the port to listen on")
    args = ap.parse_args(argv)
    mcp = server()
    print(f"example MCP server (label github) on http://127.0.0.1:{args.port}/mcp", flush=True)
    uvicorn.run(mcp.streamable_http_app(), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
