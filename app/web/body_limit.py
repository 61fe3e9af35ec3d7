"""Request bodies checked while they arrive, before any route sees them.

- Uploads (multipart) are refused once over the upload limit, before they are stored.
- Every other body (JSON, forms) has its own small limit: nothing but a file needs more.
- JSON must be standard JSON: `NaN` and `Infinity` are not numbers there (Python's parser
  accepts them, and they would fail later, far from the request), so they are a 422.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Room for multipart headers and the small form fields around the file.
OVERHEAD = 1024 * 1024


class _TooLarge(Exception):
    pass


class _NotStandardJson(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NotStandardJson(name)


def _nonstandard_constant(body: bytes) -> str | None:
    """`NaN`, `Infinity` or `-Infinity` if the body uses one as a number, else None (a body
    that is not JSON at all is left to the route's own 422)."""
    try:
        json.loads(body, parse_constant=_refuse_constant)
    except _NotStandardJson as exc:
        return str(exc)
    except ValueError:
        return None
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int, max_other_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_other_bytes = max_other_bytes
        # A dataset may come with validation and test files beside the training file.
        self.limit = 3 * max_bytes + OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        upload = content_type == b"multipart/form-data"
        limit = self.limit if upload else self.max_other_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, upload)
            return
        if content_type == b"application/json":
            await self._json(scope, receive, send, limit)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send, upload)

    async def _json(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Read the whole (small) JSON body, check it, then hand it on unchanged."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._reject(send, upload=False)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        constant = _nonstandard_constant(body)
        if constant is not None:
            detail = (
                f"{constant} is not a JSON number; send a finite number (or null where the "
                "field allows it)"
            )
            await _answer(send, 422, {"detail": detail})
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as servers do

        await self.app(scope, replay, send)

    async def _reject(self, send: Send, upload: bool) -> None:
        if upload:
            mib = self.max_bytes // (1024 * 1024)
            detail = (
                f"upload is larger than the limit of {mib} MiB per file; "
                "split it or raise TUNEBOARD_MAX_UPLOAD_BYTES"
            )
        else:
            kib = self.max_other_bytes // 1024
            detail = (
                f"the request body is over {kib} KiB; only file uploads (multipart) may be larger"
            )
        await _answer(send, 413, {"detail": detail})


async def _answer(send: Send, status: int, payload: dict[str, str]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
