"""cc2api: an HTTP gateway that runs the Claude Code CLI and streams its output as SSE."""

__version__ = "0.1.0"
