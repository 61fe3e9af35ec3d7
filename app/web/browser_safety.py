"""What every response does to keep browsers safe: the Host check and the hardening headers.

- Host: a page on another site can point its own name at 127.0.0.1 (DNS rebinding) and so
  reach a server on localhost as "same origin". Answering only the names we are reached by
  (settings.allowed_hosts, loopback by default) stops that; anything else is a 400.
- Headers: a Content-Security-Policy with no inline script (a fresh nonce per response for
  the one page that needs inline script, the API docs), no framing, no type sniffing, no
  referrer to other sites, no caching of pages and API answers (they hold CSRF tokens, API
  tokens and private data), and HSTS where cookies are Secure (behind HTTPS).
"""

from __future__ import annotations

import json
import secrets

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NONCE_KEY = "csp_nonce"  # scope["state"][NONCE_KEY]: request.state.csp_nonce in routes
HSTS = "max-age=31536000; includeSubDomains"


def host_name(host_header: str) -> str:
    """The name in a Host header, without port and IPv6 brackets, lower-cased."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def content_security_policy(nonce: str, *, inline_styles: bool = False) -> str:
    """Our pages keep inline styles out too (bars and heatmap cells get their sizes from data
    attributes that app.js applies; CSSOM writes are allowed); only the vendored API docs
    page, which sets style attributes itself, is given `inline_styles`."""
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            "style-src 'self'" + (" 'unsafe-inline'" if inline_styles else ""),
            "img-src 'self' data: blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class BrowserSafetyMiddleware:
    def __init__(self, app: ASGIApp, *, allowed_hosts: list[str], https_only: bool) -> None:
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.allowed = {host_name(h) for h in allowed_hosts}
        self.https_only = https_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if not self.any_host and host_name(host) not in self.allowed:
            await _refuse_host(send, host)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})[NONCE_KEY] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", content_security_policy(nonce))
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")  # for browsers without CSP 2
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                if not scope["path"].startswith("/static/"):
                    headers.setdefault("Cache-Control", "no-store")
                if self.https_only:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _refuse_host(send: Send, host: str) -> None:
    shown = host[:100]
    body = json.dumps(
        {
            "detail": f"this server does not answer to the host {shown!r}; if that is how "
            "people reach it, add the name to TUNEBOARD_ALLOWED_HOSTS"
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
