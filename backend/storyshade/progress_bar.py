"""Terminal progress for `storyshade render`: one tqdm bar per stage."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from storyshade.progress import Reporter


class TerminalProgress:
    def __init__(self) -> None:
        self._bar: tqdm | None = None
        self._stage = ""

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar:
            self._bar.close()

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "note":
            tqdm.write(event["message"])
            return
        if event.get("type") != "progress":
            return
        if event["stage"] != self._stage or self._bar is None:
            if self._bar:
                self._bar.close()
            self._stage = event["stage"]
            self._bar = tqdm(total=event["total"], desc=self._stage, unit="it", leave=False)
        self._bar.n = event["done"]
        self._bar.refresh()

    def reporter(self) -> Reporter:
        return Reporter(self.on_event)
