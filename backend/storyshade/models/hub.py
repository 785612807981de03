"""The one place StoryShade talks to a model hub: a repository's files with their sizes and
hashes at one commit, and a file's bytes from an offset.

Requests go through huggingface_hub (its `HfApi` and its HTTP session), so `HF_ENDPOINT`
(a mirror, a test stand-in), `HF_TOKEN` or a stored login, `HTTPS_PROXY`/`NO_PROXY` and
`HF_HUB_OFFLINE` act as they do for the hub's own tools. Files are fetched by plain HTTP
GETs of `resolve/<commit>/<path>` with a `Range` header, so an interrupted file continues
where it stopped. Every failure becomes a `PullError` that names the fix.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from storyshade.errors import StoryShadeError
from storyshade.models.select import RemoteFile
from storyshade.models.sources import hub_url

CONNECT_S = 20.0
READ_S = 60.0  # a stall longer than this is a dropped connection: resume it


class PullError(StoryShadeError):
    """The hub refused, could not be reached, or a download could not be finished."""

    status = 502


class HubUnreachable(PullError):
    """No answer at all (no network, a proxy that fails, DNS): pull adds the manual steps."""


@dataclass(frozen=True)
class Snapshot:
    """A repository at one commit: what is in it, and whether it is gated."""

    repo: str
    commit: str
    gated: bool
    files: dict[str, RemoteFile]


OFFLINE_SWITCHES = ("STORYSHADE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline_switch(names: tuple[str, ...] = OFFLINE_SWITCHES) -> str | None:
    """The first of `names` set to a true value in the environment."""
    for name in names:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


def refuse_if_offline() -> None:
    """`STORYSHADE_OFFLINE=1` (or the hub's own `HF_HUB_OFFLINE=1`) forbids every download."""
    name = offline_switch()
    if name:
        raise PullError(
            f"downloads are switched off here ({name}=1)",
            f"unset {name} (or run `{name}=0 storyshade models pull ...`) to download; or "
            "copy a models folder pulled on another machine (docs/models.md)",
            field=name,
        )


def token_or_stored(token: str | None) -> str | None:
    """The token given, else $HF_TOKEN or a stored `hf auth login`."""
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


class Hub:
    """Metadata and bytes of hub repositories, with one token."""

    def __init__(self, token: str | None = None) -> None:
        self.endpoint = hub_url()
        self.token = token_or_stored(token)

    def _headers(self) -> dict[str, str]:
        from huggingface_hub.utils import build_hf_headers

        return build_hf_headers(token=self.token or False, library_name="storyshade")

    def snapshot(self, repo: str, revision: str = "main") -> Snapshot:
        """Every file of `repo` at `revision` with its size and hash (one request)."""
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.endpoint, token=self.token or False, library_name="storyshade")
        try:
            info = api.model_info(repo, revision=revision, files_metadata=True, timeout=READ_S)
        except Exception as exc:
            raise self.error(exc, repo) from None
        files = {
            s.rfilename: RemoteFile(
                s.rfilename,
                int(s.lfs.size if s.lfs else s.size or 0),
                s.lfs.sha256 if s.lfs else None,
                None if s.lfs else s.blob_id,
            )
            for s in info.siblings or []
        }
        return Snapshot(repo, str(info.sha), bool(info.gated), files)

    def url(self, repo: str, commit: str, path: str) -> str:
        return f"{self.endpoint}/{repo}/resolve/{commit}/{quote(path)}"

    def check_access(self, repo: str, commit: str, path: str) -> None:
        """Ask for a file's first byte: a gated repository refuses here, before any
        other file of the pull is written."""
        try:
            with self.open(repo, commit, path, 0, size=1):
                pass
        except PullError:
            raise
        except Exception as exc:
            raise self.error(exc, repo, path) from None

    @contextmanager
    def open(
        self, repo: str, commit: str, path: str, start: int, size: int | None = None
    ) -> Iterator[Any]:
        """The response streaming `path` from byte `start` (from 0 where the server ignores
        the range: its status is then 200, not 206). Only opening is translated into a
        PullError here; the caller handles what happens while it reads the body."""
        import httpx2
        from huggingface_hub.utils import get_session, hf_raise_for_status

        headers = self._headers()
        if start or size:
            end = "" if size is None else str(start + size - 1)
            headers["Range"] = f"bytes={start}-{end}"
        timeout = httpx2.Timeout(READ_S, connect=CONNECT_S)
        with ExitStack() as stack:
            try:
                response = stack.enter_context(
                    get_session().stream(
                        "GET", self.url(repo, commit, path), headers=headers, timeout=timeout
                    )
                )
                if response.status_code >= 400:
                    response.read()
                    hf_raise_for_status(response)
            except Exception as exc:
                if is_transient(exc):
                    raise
                raise self.error(exc, repo, path) from None
            yield response

    def error(self, exc: Exception, repo: str, path: str | None = None) -> PullError:
        """A hub or network failure as a problem and its fix."""
        return hub_error(exc, self.endpoint, repo, path, bool(self.token))


def is_transient(exc: BaseException) -> bool:
    """A dropped, refused or stalled connection once a pull is under way: worth trying again
    from where it stopped (a proxy that refuses is not: its settings need fixing)."""
    import httpx2

    return isinstance(
        exc, httpx2.TimeoutException | httpx2.NetworkError | httpx2.RemoteProtocolError
    )


def _proxy_env() -> str:
    names = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
    return ", ".join(f"{n}={os.environ[n]}" for n in names if os.environ.get(n))


def hub_error(
    exc: Exception, endpoint: str, repo: str, path: str | None, has_token: bool
) -> PullError:
    import httpx2
    from huggingface_hub import errors as hf

    page = f"{endpoint}/{repo}"
    what = f"{repo}/{path}" if path else repo
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return PullError(
            "downloads are switched off here (HF_HUB_OFFLINE=1)",
            "unset HF_HUB_OFFLINE (or run `HF_HUB_OFFLINE=0 storyshade models pull ...`)",
            field="HF_HUB_OFFLINE",
        )
    if isinstance(exc, hf.GatedRepoError):
        if has_token:
            return PullError(
                f"{repo} is gated and the token given has no access to it ({status})",
                f"accept its licence at {page} while logged in as the token's account, then "
                "pull again (or give that account's token with --token or HF_TOKEN)",
                field="token",
            )
        return PullError(
            f"{repo} is gated: its licence must be accepted before it can be downloaded ({status})",
            f"accept the licence at {page}, create a read token at {endpoint}/settings/tokens "
            "and pull again with --token hf_... (or set HF_TOKEN; the server route takes "
            '"token")',
            field="token",
        )
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return PullError(
            f"{what} no longer exists on {endpoint} (404)",
            f"the repository changed: see {page}; update StoryShade, or download the model "
            "by hand (docs/models.md)",
            field="models",
        )
    if isinstance(exc, hf.RevisionNotFoundError):
        return PullError(
            f"{repo} has no such revision on {endpoint} (404)",
            f"see {page}; update StoryShade",
            field="models",
        )
    if isinstance(exc, hf.RepositoryNotFoundError):
        private = "" if has_token else "; a private repository needs --token or HF_TOKEN"
        return PullError(
            f"repository {repo} not found on {endpoint} ({status})",
            f"it may have been moved or removed: check {page}{private}",
            field="models",
        )
    if isinstance(exc, hf.HfHubHTTPError):
        return PullError(
            f"the hub answered {status} for {what}",
            "try again later: the pull resumes where it stopped",
            field="models",
        )
    proxies = _proxy_env()
    if isinstance(exc, httpx2.ProxyError):
        return HubUnreachable(
            f"the proxy failed while reaching {endpoint} ({exc})",
            f"check the proxy settings ({proxies or 'HTTPS_PROXY'}) and NO_PROXY",
            field="HTTPS_PROXY",
        )
    if isinstance(exc, httpx2.TransportError | ConnectionError | TimeoutError):
        via = f" through {proxies}" if proxies else ""
        return HubUnreachable(
            f"cannot reach {endpoint}{via} ({type(exc).__name__}: {exc})",
            "check the network connection (behind a proxy, set HTTPS_PROXY)",
            field="network",
        )
    return PullError(f"download of {what} failed: {type(exc).__name__}: {exc}", field="models")
