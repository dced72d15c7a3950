"""ASGI middleware that refuses request bodies over a size limit before they are parsed.

A declared ``Content-Length`` over the limit is answered 413 at once; a chunked body is counted
as it streams in and cut off with 413 as soon as it crosses the limit, so an endless upload can
never fill memory or the multipart parser's spool files.
"""

from __future__ import annotations

import json

# bounds on search parameters, shared by POST /search and POST /search/text
MAX_K = 100              # candidates per answer
MAX_FILTERS = 16         # filters per query
MAX_FILTER_CHARS = 200   # characters per filter


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                return await _refuse(send, 400, "Content-Length is not a number.")
            if too_big:
                return await _refuse(send, 413, f"request body over the limit of "
                                                f"{self.max_bytes} bytes.")
        seen = 0
        started = overflow = False

        async def counted_receive():
            nonlocal seen, overflow
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    overflow = True
                    raise BodyTooLarge
            return message

        async def tracked_send(message):
            nonlocal started
            if overflow:   # the app's own answer to the cut-off body (e.g. a parse error) is dropped
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:   # BodyTooLarge, possibly wrapped (an ExceptionGroup from a middleware)
            if not overflow:
                raise
        if overflow and not started:
            await _refuse(send, 413, f"request body over the limit of {self.max_bytes} bytes.")


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
