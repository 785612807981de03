"""Security headers on every response, so nothing the server sends can be framed, sniffed
into another type, run inline script or leak its address in a Referer.

A pure ASGI middleware, outermost, so the Guard's refusals (401, 403, 413...) carry them
too. A response that sets its own Content-Security-Policy (the review page, /docs) keeps
it; every other response, JSON included, gets one that allows nothing at all.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

NOTHING = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
CSP = b"content-security-policy"

DOCS = "/docs"
CDN = "https://cdn.jsdelivr.net"  # where FastAPI's Swagger UI page loads its files from
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                have = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in HEADERS if k not in have]
                if CSP not in have:
                    headers.append((CSP, NOTHING.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def script_hashes(html: str) -> str:
    """CSP sources for the inline scripts of a page this server generates itself (never
    for anything holding data a client sent)."""
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in INLINE_SCRIPT.findall(html)
    )


def docs_router(title: str, openapi_url: str) -> APIRouter:
    """/docs (Swagger UI) under a CSP that allows its CDN files and its one inline script."""
    api = APIRouter()
    page = get_swagger_ui_html(openapi_url=openapi_url, title=f"{title} - Swagger UI")
    html = bytes(page.body).decode()
    csp = (
        f"default-src 'none'; script-src {CDN} {script_hashes(html)}; style-src {CDN}; "
        f"img-src data: https://fastapi.tiangolo.com; connect-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )

    @api.get(DOCS, include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": csp})

    return api
