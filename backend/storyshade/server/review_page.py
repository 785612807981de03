"""GET /v1/review: a page that plays the finished takes of a sequence side by side.

A row per shot, a column per take (the server's finished jobs of that shot, oldest first),
all playing in step at the shot's frame rate, each with its name (the job's tag: the add-on
sends the take strip's name) and settings underneath. The page
is static and holds no data: its script reads the same API as every client (`/v1/jobs`,
`/v1/jobs/{id}/frames/{n}`), sending the token the user types when the server has one, so
the page itself is served without a token (docs/server.md).

Its script and style are files the app serves (`static/review.js`, `static/review.css`),
never inline, so the page's Content-Security-Policy allows no inline script at all.

Query: `?shot=NAME` (repeatable) limits the rows; `?fps=N` sets the playback rate.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

PATH = "/v1/review"
SCRIPT = "/v1/review.js"
STYLE = "/v1/review.css"
PUBLIC = frozenset({PATH, SCRIPT, STYLE})  # served without a token: they hold no data

# Scripts and styles from this server only; frames arrive as blob: URLs made by the script.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>StoryShade review</title>
<link rel="stylesheet" href="{STYLE}"></head>
<body>
<h1>StoryShade review <span id="status">loading...</span></h1>
<form id="auth"><label>Token <input id="token" type="password" size="32"></label>
 <button>Show takes</button></form>
<div id="shots"></div>
<script src="{SCRIPT}"></script>
</body></html>
"""


def _static(name: str) -> bytes:
    return resources.files("storyshade.server").joinpath("static", name).read_bytes()


def review_router() -> APIRouter:
    api = APIRouter()
    script, style = _static("review.js"), _static("review.css")

    @api.get(PATH, response_class=HTMLResponse, include_in_schema=False)
    def review() -> HTMLResponse:
        """The finished takes of a sequence, playing side by side (docs/server.md)."""
        return HTMLResponse(PAGE, headers={"Content-Security-Policy": CSP})

    @api.get(SCRIPT, include_in_schema=False)
    def review_script() -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8")

    @api.get(STYLE, include_in_schema=False)
    def review_style() -> Response:
        return Response(style, media_type="text/css; charset=utf-8")

    return api
