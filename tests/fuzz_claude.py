#!/usr/bin/env python3
"""A stand-in for the Claude Code CLI that answers every prompt at once, for the fuzz tests.

Unlike fake_claude.py it never acts on the prompt, so no generated prompt can make
it hang, crash or leave processes behind.
"""

from __future__ import annotations

import json
import sys
import uuid


def main() -> int:
    if "--version" in sys.argv:
        print("9.9.9 (Fuzz Claude Code)")
        return 0
    if sys.argv[1:3] == ["auth", "status"]:
        print(json.dumps({"loggedIn": True, "authMethod": "api_key"}))
        return 0
    session = str(uuid.uuid4())
    sys.stdin.buffer.readline()
    for line in (
        {"type": "system", "subtype": "init", "session_id": session},
        {"type": "result", "subtype": "success", "result": "ok", "session_id": session},
    ):
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
    while sys.stdin.buffer.read(65536):  # exit once input has ended, as the real CLI does
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
