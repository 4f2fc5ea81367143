#!/usr/bin/env python3
"""A stand-in for the Claude Code CLI, for faults the real one cannot be made to show.

It speaks just enough of ``-p --input-format stream-json --output-format
stream-json``: it reads the first user message from stdin and acts on the
prompt's first word. Tests point ``CLAUDE_PATH`` at this file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

SESSION = str(uuid.uuid4())


def out(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def init() -> None:
    out({"type": "system", "subtype": "init", "session_id": SESSION, "cwd": os.getcwd()})


def result(text: str = "ok") -> None:
    out(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "result": text,
            "session_id": SESSION,
        }
    )


def wait_for_stdin_close() -> None:
    # Like the real CLI in stream-json mode: exit only once input has ended.
    while sys.stdin.buffer.read(65536):
        pass


def spawn_escaper(ignore_term: bool, seconds: float = 600) -> int:
    """Start a sleeper in a session of its own, as the real Bash tool does.

    Returns once the child is ready (its SIGTERM handling in place), so a test
    that signals it right away tests what it means to.
    """
    code = "import signal, sys, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "sys.stdout.write('ready\\n')\nsys.stdout.flush()\n"
    code += f"time.sleep({seconds})\n"
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert child.stdout is not None
    child.stdout.readline()
    child.stdout.close()
    return child.pid


def main() -> int:  # noqa: PLR0911, PLR0912 (one branch a mode)
    if "--version" in sys.argv:
        print("9.9.9 (Fake Claude Code)")
        return 0
    if sys.argv[1:3] == ["auth", "status"]:
        logged_in = "ANTHROPIC_API_KEY" in os.environ
        print(json.dumps({"loggedIn": logged_in, "authMethod": "api_key" if logged_in else "none"}))
        return 0
    line = sys.stdin.readline()
    prompt = json.loads(line)["message"]["content"] if line else ""
    word, _, arg = prompt.partition(" ")
    if word == "silent":  # never prints, never ends
        while True:
            time.sleep(1)
    init()
    if word == "echo":
        out({"type": "assistant", "text": prompt})
        result(prompt)
    elif word == "spend":  # spend USD: a result line that cost that much
        out(
            {
                "type": "result",
                "subtype": "success",
                "is_error": False,
                "result": "spent",
                "session_id": SESSION,
                "total_cost_usd": float(arg),
                "modelUsage": {
                    "fake-model": {"inputTokens": 1000, "outputTokens": 10, "costUSD": float(arg)}
                },
            }
        )
    elif word == "argv":
        withheld = (
            "CLAUDECODE",
            "AUTH_USER",
            "AUTH_PASSWORD",
            "AUTH_PASSWORD_FILE",
            "CREDENTIALS_DIRECTORY",
            "CC2API_AUTH_USER",
            "CC2API_AUTH_PASSWORD",
            "METRICS_TOKEN",
            "METRICS_TOKEN_FILE",
        )
        out(
            {
                "type": "assistant",
                "argv": sys.argv[1:],
                "prompt": prompt,
                "marker": os.environ.get("CC2API_RUN_ID"),
                "leaked": [name for name in withheld if name in os.environ],
                "api_key": os.environ.get("ANTHROPIC_API_KEY"),
                "places": {
                    name: os.environ.get(name) for name in ("HOME", "TMPDIR", "CLAUDE_CONFIG_DIR")
                },
                "cron_off": os.environ.get("CLAUDE_CODE_DISABLE_CRON"),
            }
        )
        result()
    elif word == "crash":
        sys.stderr.write("fatal: something broke\n")
        sys.stderr.flush()
        return 3
    elif word == "stderr-flood":
        block = b"e" * 65536
        for _ in range(int(arg or 160)):
            sys.stderr.buffer.write(block)
        sys.stderr.flush()
        result("survived")
    elif word == "long-line":
        sys.stdout.write('{"type":"assistant","pad":"' + "x" * int(arg) + '"}\n')
        sys.stdout.flush()
        result()
    elif word == "crash-mid":
        # Dies halfway through a line, after some whole ones.
        out({"type": "assistant", "text": "before"})
        sys.stdout.write('{"type":"assistant","text":"cut sh')
        sys.stdout.flush()
        os._exit(9)
    elif word == "bad-utf8":
        sys.stdout.buffer.write(b'{"type":"assistant","text":"bad \xff\xfe bytes"}\n')
        sys.stdout.flush()
        result()
    elif word == "huge-line":
        # arg MiB of one line, written a MiB at a time, then a newline.
        block = b"x" * 1048576
        sys.stdout.buffer.write(b'{"type":"assistant","pad":"')
        for _ in range(int(arg)):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.write(b'"}\n')
        sys.stdout.flush()
        result()
    elif word in ("ask", "ask-withdraw", "ask-json"):
        # Asks the gateway about a tool call (approval: "http") and reports the answer;
        # the tool call and the question come in one write, as one read. ask-json takes
        # the whole request (the fields after subtype) as JSON.
        request = {"subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": arg}}
        if word == "ask-json":
            request = {"subtype": "can_use_tool", **json.loads(arg)}
        call = {"type": "assistant", "tool_use": arg}
        ask = {"type": "control_request", "request_id": "req-1", "request": request}
        sys.stdout.write(json.dumps(call) + "\n" + json.dumps(ask) + "\n")
        sys.stdout.flush()
        if word == "ask-withdraw":
            time.sleep(0.3)
            out({"type": "control_cancel_request", "request_id": "req-1"})
            result()
            wait_for_stdin_close()
            return 0
        while line := sys.stdin.readline():
            message = json.loads(line)
            if message.get("type") == "control_response":
                out({"type": "assistant", "decision": message["response"]["response"]})
                break
        result()
    elif word == "ask-and-exit":
        # Much output, then a question, then gone: the gateway reads the question
        # only after the CLI has exited.
        for i in range(int(arg or 40)):
            out({"type": "assistant", "n": i, "pad": "p" * 65536})
        request = {"subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": "ls"}}
        out({"type": "control_request", "request_id": "req-3", "request": request})
        return 0
    elif word == "interruptible":
        # Prints without end (blocking once nobody reads) until an interrupt arrives,
        # then acknowledges it and ends its turn as the real CLI does. "interruptible <s>"
        # prints a short line every s seconds instead, for a reader that shows each one.
        lock, stop = threading.Lock(), threading.Event()

        def listen() -> None:
            for raw in sys.stdin:
                message = json.loads(raw)
                if message.get("type") == "control_request":
                    stop.set()
                    ack = {"subtype": "success", "request_id": message["request_id"]}
                    with lock:
                        out({"type": "control_response", "response": ack})
                        out(
                            {
                                "type": "result",
                                "subtype": "error_during_execution",
                                "is_error": True,
                                "terminal_reason": "aborted_streaming",
                                "session_id": SESSION,
                            }
                        )
                    return

        threading.Thread(target=listen, daemon=True).start()
        printed, pause = 0, float(arg or 0)
        while not stop.is_set():
            with lock:  # a write blocked on a full pipe holds the lock: so would the CLI
                out({"type": "assistant", "n": printed, "pad": "p" * (16 if pause else 65536)})
            printed += 1
            stop.wait(pause)
        time.sleep(0.2)
        return 1
    elif word == "ask-late":
        # Asks after its result, when the gateway has closed its input already.
        result()
        wait_for_stdin_close()
        request = {"subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": "ls"}}
        out({"type": "control_request", "request_id": "req-2", "request": request})
        time.sleep(0.3)
        return 0
    elif word == "non-json":
        sys.stdout.write("this is not JSON\n")
        sys.stdout.flush()
        result()
    elif word == "lines":
        count, _, size = arg.partition(" ")
        for i in range(int(count)):
            out({"type": "assistant", "n": i, "pad": "p" * int(size or 0)})
        result()
        return 0  # exits without waiting: what it printed must still all arrive
    elif word == "priced":
        # A result line with the figures a run's record keeps.
        out(
            {
                "type": "result",
                "subtype": "success",
                "is_error": False,
                "result": "ok",
                "session_id": SESSION,
                "total_cost_usd": 0.0123,
                "usage": {"input_tokens": 11, "output_tokens": 22},
                "num_turns": 3,
                "duration_api_ms": 456,
            }
        )
    elif word == "billed":
        # Usage as the real CLI reports it: arg is JSON with "assistant" (messages, each
        # printed as an assistant line: id, model, usage), "result" (fields of the
        # result line, or null for none), "exit" (its exit code) and "hang" (never end).
        plan = json.loads(arg)
        for message in plan.get("assistant", []):
            out({"type": "assistant", "message": {"type": "message", **message}})
        if plan.get("hang"):
            while True:
                time.sleep(1)
        if plan.get("result") is not None:
            out({"type": "result", "session_id": SESSION, **plan["result"]})
        if plan.get("exit"):
            return int(plan["exit"])
    elif word == "flood":
        # Prints until killed: a run streaming hard when its gateway dies.
        i = 0
        while True:
            out({"type": "assistant", "n": i, "pad": "p" * int(arg or 0)})
            i += 1
    elif word in ("hang", "ignore-sigterm"):
        if word == "ignore-sigterm":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        out({"type": "assistant", "pid": os.getpid()})
        while True:
            time.sleep(1)
    elif word in ("escape", "escape-stubborn", "escape-and-exit"):
        pid = spawn_escaper(ignore_term=word == "escape-stubborn")
        out({"type": "assistant", "child_pid": pid})
        if word == "escape-and-exit":
            result()
        else:
            while True:
                time.sleep(1)
    elif word == "short-orphan":
        # A tool's background job that ends on its own while the run goes on.
        pid = spawn_escaper(ignore_term=False, seconds=0.2)
        out({"type": "assistant", "child_pid": pid})
        time.sleep(1)
        result()
    elif word == "chatty-leftover":
        # A background job that inherited stdout and keeps writing after the CLI exits.
        code = "import sys, time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.3)\n"
        child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        out({"type": "assistant", "child_pid": child.pid})
        result()
        return 0
    elif word == "stubborn-leftover":
        pid = spawn_escaper(ignore_term=True)
        out({"type": "assistant", "child_pid": pid})
        result()
    elif word == "no-exit":
        result()
        while True:  # ignores the end of its input, as a CLI stuck on exit would
            time.sleep(1)
    else:
        result(prompt)
    wait_for_stdin_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
