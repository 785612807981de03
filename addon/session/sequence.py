"""Shade a sequence: one session per shot, one after another, one progress display.

Used by the Shade Sequence button (driven by the modal timer like a single shot: it has
the session's `tick`, `cancel`, `running` and `outcome`) and by `shade --all-shots`
(blocking). A shot that fails does not stop the others; Cancel stops the shot under way
and the rest. Each finished shot keeps its take.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

from ..errors import StoryShadeError
from ..wire.countdown import Countdown
from .shade import CANCELLED, DONE, FAILED, ShadeSession, run_to_end
from .shots import Shot


class SequenceRun:
    """Advance with `tick()`; `current` is the session of the shot under way."""

    def __init__(
        self,
        shots: list[Shot],
        make_session: Callable[[Shot], ShadeSession],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shots = shots
        self.make_session = make_session
        self.clock = clock
        self.countdown = Countdown(clock)
        self.shot_started = 0.0
        self.shaded_seconds = 0.0  # the shots shaded so far took this long
        self.shaded_frames = 0  # for this many frames
        self.index = -1  # the shot under way
        self.current: ShadeSession | None = None
        self.failed: list[tuple[str, str]] = []  # (shot, why)
        self.done: list[str] = []
        self.cancelled = False
        self.started = clock()
        self.on_shot_end: Callable[[Shot, ShadeSession | None], None] | None = None

    @property
    def running(self) -> bool:
        if self.current is not None and self.current.running:
            return True  # a cancelled shot still waits for the server's confirmation
        return not self.cancelled and self.index < len(self.shots)

    @property
    def outcome(self) -> str:
        if self.running:
            return ""
        if self.cancelled:
            return CANCELLED
        return FAILED if self.failed else DONE

    @property
    def shot(self) -> Shot | None:
        return self.shots[self.index] if 0 <= self.index < len(self.shots) else None

    def eta(self) -> float | None:
        """Seconds left for the whole sequence (None: not known yet, or done): the shots to
        come at the pace of the shots shaded so far (or, before one is, of this shot as the
        server estimates it), plus what the server says this shot needs. Shown through a
        Countdown, so it never rises by more than the time that passed."""
        if not self.running:
            self.countdown.done()
            return None
        return self.countdown.show(self._raw_eta())

    def _raw_eta(self) -> float | None:
        shot, session = self.shot, self.current
        if shot is None:
            return None
        spent = self.clock() - self.shot_started
        server = getattr(session, "eta_s", None) if session is not None else None
        pace = self.shaded_seconds / self.shaded_frames if self.shaded_frames else None
        if pace is None and server is not None:
            pace = (spent + server) / max(1, shot.frames)  # this shot, as the server sees it
        if pace is None:
            return None
        now = server if server is not None else max(0.0, pace * shot.frames - spent)
        later = sum(s.frames for s in self.shots[self.index + 1 :])
        return now + pace * later

    def headline(self) -> str:
        """'Shot 2/3 sh020 (frames 25-48), about 40 s left' while running; a summary after."""
        if self.running and self.shot is not None:
            left = self.eta()
            eta = f", about {left:.0f} s left" if left is not None else ""
            shot = self.shot
            return (
                f"Shot {self.index + 1}/{len(self.shots)} {shot.name} "
                f"(frames {shot.frame_start}-{shot.frame_end}){eta}"
            )
        ok = len(self.done)
        text = f"Sequence: {ok} of {len(self.shots)} shots shaded"
        if self.failed:
            text += f"; failed: {', '.join(name for name, _ in self.failed)}"
        if self.cancelled:
            text += "; cancelled"
        return text

    def _next(self) -> None:
        """Close the shot under way (if any) and start the next one that can start."""
        if self.current is not None and self.shot is not None:
            if self.current.outcome == DONE:
                self.done.append(self.shot.name)
                self.shaded_seconds += self.clock() - self.shot_started
                self.shaded_frames += self.shot.frames
            elif self.current.outcome == CANCELLED and self.cancelled:
                pass
            else:
                self.failed.append((self.shot.name, self.current.text))
            if self.on_shot_end:
                self.on_shot_end(self.shot, self.current)
            self.current = None
        while not self.cancelled:
            self.index += 1
            if self.index >= len(self.shots):
                return
            try:
                self.shot_started = self.clock()
                self.current = self.make_session(self.shots[self.index])
                return
            except StoryShadeError as exc:  # this shot cannot start: say so, go on
                self.failed.append((self.shots[self.index].name, exc.problem))
                if self.on_shot_end:
                    self.on_shot_end(self.shots[self.index], None)

    def tick(self, wait: float = 0.0) -> bool:
        if self.current is not None and self.current.running:
            self.current.tick(wait=wait)
        else:
            self._next()
        return self.running

    def cancel(self) -> None:
        """Stop the shot under way (as its own Cancel does: the session keeps listening
        until the server confirms) and start no shot after it."""
        self.cancelled = True
        if self.current is not None and self.current.running:
            self.current.cancel()

    def abandon(self) -> None:
        """Blender ended the run (file loaded, window closed): stop the shot's job, start
        no other."""
        self.cancelled = True
        if self.current is not None:
            self.current.abandon()

    def run_blocking(self, on_change: Callable[[SequenceRun], None] | None = None) -> SequenceRun:
        """To the end on this thread (background mode); Ctrl+C cancels."""
        run_to_end(self, on_change)
        self.close()
        return self

    def close(self) -> None:
        """Record the last shot's end (a cancelled one is not counted as failed)."""
        if self.current is not None and not self.current.running:
            self._next()


def shot_request(shot: Shot) -> dict:
    """The ShadeRequest fields that make a session shade `shot`: its frames, its name for
    take folders and strips, and (scene strips) the camera the strip shows."""
    return {
        "frame_start": shot.frame_start,
        "frame_end": shot.frame_end,
        "shot": shot.slug,
        "camera": shot.camera if shot.source == "strip" else "",
    }


SAME, PER_SHOT = "SAME", "PER_SHOT"  # seed policies of a sequence
SEED_POLICIES = (
    (SAME, "Same Seed", "Every shot uses the seed as given (one grain and look throughout)"),
    (
        PER_SHOT,
        "Seed per Shot",
        "Each shot gets its own seed, made from the seed and the shot's name: stable when "
        "shots are re-run, added or removed",
    ),
)


def shot_settings(settings: dict, shot: Shot, policy: str = SAME) -> dict:
    """The settings for one shot of a sequence under the seed `policy`."""
    if policy == SAME:
        return dict(settings)
    if policy != PER_SHOT:
        names = ", ".join(p[0].lower().replace("_", "-") for p in SEED_POLICIES)
        raise StoryShadeError(f"unknown seed policy '{policy}'", f"use one of: {names}")
    base = int(settings.get("seed", 0) or 0)
    return {**settings, "seed": (base + zlib.crc32(shot.name.encode("utf-8"))) % 2**32}
