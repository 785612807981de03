"""Named client tokens: on a shared box, each artist sees and cancels only their own jobs.

`serve --clients FILE` reads a TOML table of client name = token. A request with a client's
token acts as that client: it lists, reads, follows and cancels only the jobs it submitted
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
    for name, token in table.items():
        if not NAME.fullmatch(name):
            raise StoryShadeError(
                f"client name {name[:80]!r} in {path} is not a plain name",
                "use letters, digits, '_', '-' or '.', up to 64 characters",
                field="clients",
            )
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
    return clients
