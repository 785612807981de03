"""Named client tokens: on a shared box, each artist sees and cancels only their own jobs.

`serve --clients FILE` reads a TOML table of client name = token, or of client name = a
table with `token` and `quota_mb` (the disk its jobs may use; a submit past it gets 507). A
request with a client's token acts as that client: it lists, reads, follows and cancels only the jobs it submitted
(another client's job answers 404, as if it did not exist). The `--token` token stays the
administrator's: it sees and cancels every job. Tokens live in a file, not on the command
line, because command lines are visible to every user in `ps`.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from storyshade.errors import StoryShadeError

NAME = re.compile(r"[A-Za-z0-9][\w.\-]{0,63}", re.ASCII)
MIN_TOKEN = 16  # characters; a guessable token is no identity


def load_clients(path: str | Path, admin_token: str | None = None) -> dict[str, str]:
    """Client name → token from a TOML file; every mistake names the file and the fix."""
    return load_client_table(path, admin_token)[0]


def _entry(path: Path, name: str, entry: object) -> tuple[object, int | None]:
    """(token, quota in bytes or None) of one client's line: a token, or a table."""
    if not isinstance(entry, dict):
        return entry, None
    unknown = sorted(set(entry) - {"token", "quota_mb"})
    if unknown:
        raise StoryShadeError(
            f"client {name} in {path} has unknown keys {unknown}",
            'write alice = {token = "...", quota_mb = 20000}',
            field="clients",
        )
    quota = entry.get("quota_mb")
    if quota is not None and (
        isinstance(quota, bool) or not isinstance(quota, int) or not 1 <= quota < 1 << 40
    ):
        raise StoryShadeError(
            f"client {name}'s quota_mb in {path} is not a whole number of MiB (1 or more)",
            "e.g. quota_mb = 20000 for about 20 GB, or leave it out for no quota",
            field="clients",
        )
    return entry.get("token"), (quota << 20 if quota is not None else None)


def load_client_table(
    path: str | Path, admin_token: str | None = None
) -> tuple[dict[str, str], dict[str, int]]:
    """(client name → token, client name → quota in bytes) from a TOML file."""
    path = Path(path).expanduser()
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StoryShadeError(
            f"cannot read the clients file {path} ({exc.strerror})",
            'write a TOML file of lines like: alice = "a-long-random-token"',
            field="clients",
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise StoryShadeError(
            f"the clients file {path} is not valid TOML ({exc})",
            'write lines like: alice = "a-long-random-token"',
            field="clients",
        ) from None
    clients: dict[str, str] = {}
    quotas: dict[str, int] = {}
    for name, entry in table.items():
        if not NAME.fullmatch(name):
            raise StoryShadeError(
                f"client name {name[:80]!r} in {path} is not a plain name",
                "use letters, digits, '_', '-' or '.', up to 64 characters",
                field="clients",
            )
        token, quota = _entry(path, name, entry)
        if quota is not None:
            quotas[name] = quota
        if not isinstance(token, str) or len(token) < MIN_TOKEN:
            raise StoryShadeError(
                f"client {name}'s token in {path} is not a string of {MIN_TOKEN}+ characters",
                'generate one, e.g. `python -c "import secrets; print(secrets.token_urlsafe())"`',
                field="clients",
            )
        if token == admin_token or token in clients.values():
            raise StoryShadeError(
                f"client {name}'s token in {path} is also another client's or the admin token",
                "give every client its own token",
                field="clients",
            )
        clients[name] = token
    if not clients:
        raise StoryShadeError(
            f"the clients file {path} names no client",
            'add lines like: alice = "a-long-random-token"',
            field="clients",
        )
    return clients, quotas
