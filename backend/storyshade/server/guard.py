"""The door: who may talk to the server and how much they may send, checked before any route.

A pure ASGI middleware, so it runs before FastAPI reads a byte of the body:

- Host: with no token the server trusts loopback, so it also insists the request was *meant*
  for loopback (`Host: 127.0.0.1/localhost/[::1]`); a web page that rebinds its own DNS name
  to 127.0.0.1 is refused.
- Origin: browsers add it to cross-site requests; unless it is an allowed CORS origin the
  request is refused, so a web page cannot submit or cancel jobs (multipart POSTs need no
  CORS preflight, so closing CORS alone would not stop them).
- Token: with one configured (the admin `--token`, or named client tokens from `--clients`),
  every request carries `Authorization: Bearer <token>`; a client token's name is put in
  the request's state (`client`) so routes show that client only its own jobs.
- Size: a body declared larger than the limit is refused from its Content-Length before it
  is read; a body without one (chunked) is counted as it streams and cut off at the limit.
- Room: a submit (`POST /v1/jobs`) is refused with 507 before its body is read while the
  data disk is under its free-space floor, or the client is over its quota (`admit`).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.concurrency import run_in_threadpool

from storyshade.server.config import ServerConfig, is_loopback
from storyshade.server.review_page import PUBLIC

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# (status, problem, fix, field) refusing a submit by `client`, or None to let it in
Admit = Callable[[str | None], tuple[int, str, str, str | None] | None]
SUBMIT = ("POST", "/v1/jobs")


def error_body(problem: str, fix: str = "", field: str | None = None) -> bytes:
    return json.dumps({"error": problem, "fix": fix, "field": field}).encode("utf-8")


async def send_error(
    send: Send, status: int, problem: str, fix: str, field: str | None, headers=()
) -> None:
    body = error_body(problem, fix, field)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: ASGIApp, config: ServerConfig, admit: Admit | None = None) -> None:
        self.app = app
        self.config = config
        self.admit = admit
        self.token = (config.token or "").encode("utf-8")
        self.clients = [(name, t.encode("utf-8")) for name, t in config.clients.items()]

    def _who(self, given: bytes) -> tuple[bool, str | None]:
        """(known, client name): the admin token is (True, None). Every token is compared,
        so the time taken does not say which one nearly matched."""
        known, client = False, None
        if self.token and hmac.compare_digest(given, self.token):
            known = True
        for name, token in self.clients:
            if hmac.compare_digest(given, token):
                known, client = True, name
        return known, client

    def _refusal(
        self, headers: dict[bytes, bytes], scope: Scope
    ) -> tuple[int, str, str, str, list] | None:
        cfg = self.config
        host = headers.get(b"host", b"").decode("latin-1")
        if not cfg.needs_auth and host:
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if not is_loopback(name):
                return (
                    421,
                    f"this server answers only requests addressed to loopback, not '{host}'",
                    "use http://127.0.0.1:PORT, or start the server with a --token to serve "
                    "other addresses",
                    "Host",
                    [],
                )
        origin = headers.get(b"origin")
        if origin is not None and origin.decode("latin-1") not in cfg.cors_origins:
            return (
                403,
                f"requests from web pages ({origin.decode('latin-1')}) are refused",
                "call the API from the add-on or a script, or allow the origin with "
                "`storyshade serve --cors-origin ORIGIN`",
                "Origin",
                [],
            )
        public = scope.get("method") == "GET" and scope.get("path") in PUBLIC
        if cfg.needs_auth and not public:  # the review page holds no data; its script asks
            auth = headers.get(b"authorization", b"")
            scheme, _, given = auth.partition(b" ")
            known, client = self._who(given.strip())
            scope.setdefault("state", {})["client"] = client
            if scheme.lower() != b"bearer" or not known:
                return (
                    401,
                    "missing or wrong token" if auth else "this server requires a token",
                    "send the header 'Authorization: Bearer <token>' (the add-on: set the "
                    "token in its preferences)",
                    "Authorization",
                    [(b"www-authenticate", b"Bearer")],
                )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        refusal = self._refusal(headers, scope)
        if refusal:
            status, problem, fix, field, extra = refusal
            await send_error(send, status, problem, fix, field, extra)
            return
        if self.admit and (scope.get("method"), scope.get("path")) == SUBMIT:
            full = await run_in_threadpool(self.admit, scope.get("state", {}).get("client"))
            if full:
                await send_error(send, *full)
                return
        limit = self.config.max_upload_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await send_error(send, 400, "Content-Length is not a number", "", "Content-Length")
                return
            if size > limit:
                await send_error(send, 413, *_too_large(size, limit))
                return
        await self._limited(scope, receive, send, limit)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app, cutting the body off at `limit` bytes and answering 413 if it was."""
        received = 0
        over = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # whatever the app makes of a cut-off body, the answer is 413
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await send_error(send, 413, *_too_large(received, limit))


def _too_large(size: int, limit: int) -> tuple[str, str, str]:
    return (
        f"the upload is {size} bytes or more, over the server limit of {limit} bytes",
        "render fewer frames or a smaller resolution, or start the server with a larger "
        "--max-upload-mb",
        "bundle",
    )
