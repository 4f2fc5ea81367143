"""The baseline for requests per second: the smallest ASGI app, served as cc2api is served.

Run as a script; it serves on 127.0.0.1 on a free port with Hypercorn's trio worker
(configured like cc2api's) and logs ``listening on http://HOST:PORT`` to stderr.
"""

from __future__ import annotations

import sys
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

BODY = b'{"status":"ok"}'


async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Answer every request with a tiny JSON document."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
            ],
            "trailers": False,
        }
    )
    await send({"type": "http.response.body", "body": BODY, "more_body": False})


async def main() -> None:
    """Serve until killed."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.keep_alive_timeout = 75  # as cc2api's
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(partial(serve, app, config))
        print(f"listening on {', '.join(urls)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    trio.run(main)
