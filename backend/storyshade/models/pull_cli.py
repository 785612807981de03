"""`storyshade models pull NAME...`: the terminal face of models/pull.py.

Progress is two tqdm bars (the whole pull and the current file: bytes, rate, time left);
with `--events` every event is a JSON line on stdout instead (what the server relays to a
pull job's SSE stream). Afterwards the presets and models asked for are checked as
`models check` does, and the command says "ready" or what is still missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from storyshade.errors import StoryShadeError
from storyshade.progress import Reporter


class PullBars:
    """A total bar and a per-file bar, fed by `downloading` progress events."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.tqdm = tqdm
        self.total: Any = None
        self.file: Any = None
        self.file_name = ""

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "note":
            self.tqdm.write(event["message"], file=sys.stderr)
            return
        if event.get("type") != "progress":
            return
        if self.total is None:
            self.total = self.tqdm(
                total=event["total"], initial=event["done"], desc="total", unit="B",
                unit_scale=True, unit_divisor=1024, position=0,
            )  # fmt: skip
        if event.get("file") != self.file_name:
            if self.file is not None:
                self.file.close()
            self.file_name = event.get("file", "")
            self.file = self.tqdm(
                total=event.get("file_total"), initial=event.get("file_done", 0),
                desc=self.file_name[-40:], unit="B", unit_scale=True, unit_divisor=1024,
                position=1, leave=False,
            )  # fmt: skip
        self.total.update(event["done"] - self.total.n)
        if self.file is not None:
            self.file.update(event.get("file_done", 0) - self.file.n)

    def close(self) -> None:
        for bar in (self.file, self.total):
            if bar is not None:
                bar.close()


def _print_event(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


def _print_plan(plan) -> None:
    from storyshade.models.pull import size_text

    data = plan.as_json()
    for m in data["models"]:
        state = "present" if m["present"] else f"{size_text(m['bytes'])}"
        if m["have"]:
            state += f" ({size_text(m['have'])} already here)"
        print(f"{m['name']:40s} {m['repo']}@{m['commit'][:10] or '-'}  {state}")
        if not m["present"]:
            for f in m["files"]:
                print(f"    {m['dest']}/{f['path']:60s} {size_text(f['bytes']):>10s}")
    for item in data["not_downloadable"]:
        print(f"{item['name']:40s} not a known download ({item['role']}): put it in place by hand")
    print(
        f"total {size_text(data['total_bytes'])}, already here {size_text(data['have_bytes'])}, "
        f"to download {size_text(data['needed_bytes'])} (free: {size_text(data['free_bytes'])})"
    )


def _check(args: argparse.Namespace, want) -> tuple[bool, list[str]]:
    """`models check` for each preset asked, and presence for each model asked."""
    from storyshade.models.check import check_preset
    from storyshade.models.locate import find, model_roots
    from storyshade.models.sources import SOURCES
    from storyshade.presets import resolve

    roots = model_roots(args.models)
    ok, lines = True, []
    for spec in want.presets:
        report = check_preset(roots, resolve(spec))
        ok = ok and report.ok
        lines.append(f"{spec}: " + ("ready" if report.ok else "not ready"))
        if not report.ok:
            lines += ["  " + line for line in report.text().splitlines()]
    for name in want.models:
        source = SOURCES[name]
        try:
            lines.append(f"{name}: ready ({find(roots, source.kind, name)})")
        except StoryShadeError as exc:
            ok = False
            lines.append(f"{name}: missing ({exc.problem})")
    return ok, lines


def cmd_pull(args: argparse.Namespace) -> int:
    if not args.events:
        return _pull(args, None)
    try:
        return _pull(args, _print_event)
    except StoryShadeError as exc:
        _print_event({"type": "error", **exc.to_json()})
        return 2


def _pull(args: argparse.Namespace, events) -> int:
    from storyshade.models.hub import Hub, HubUnreachable, refuse_if_offline
    from storyshade.models.locate import model_roots
    from storyshade.models.offline import lift_default
    from storyshade.models.pull import (
        check_space,
        check_writable,
        fetch,
        make_plan,
        wanted,
        with_manual_steps,
    )

    lift_default()  # the user asked for this download: only their own switches stop it
    refuse_if_offline()
    roots = model_roots(args.models)
    if not roots:
        raise StoryShadeError(
            "no models folder to pull into",
            "pass --models DIR (the first one is written) or set STORYSHADE_MODELS",
            field="models",
        )
    root = roots[0]
    want = wanted(args.names)
    if not want.sources:
        print("nothing to download: " + ", ".join(args.names) + " needs no known models")
    if not args.dry_run:
        check_writable(root)
    bars = PullBars() if events is None else None
    reporter = Reporter(events or bars.on_event)  # type: ignore[union-attr]
    hub = Hub(args.token)
    try:
        plan = make_plan(want, root, args.variant, hub, reporter)
    except HubUnreachable as exc:
        raise with_manual_steps(exc, want, root) from None
    if args.dry_run:
        if events:
            events({"type": "plan", **plan.as_json()})
        elif args.json:
            print(json.dumps(plan.as_json(), indent=1))
        else:
            _print_plan(plan)
        return 0
    check_space(plan)
    try:
        fetch(plan, hub, reporter)
    except KeyboardInterrupt:
        if bars:
            bars.close()
        print("interrupted: run the same command again to continue", file=sys.stderr)
        return 130
    finally:
        if bars:
            bars.close()
    ok, lines = _check(args, want)
    for line in lines:
        (events or (lambda e: print(e["message"])))({"type": "note", "message": line})
    if not ok:
        raise StoryShadeError(
            "downloaded, but not everything asked for is ready: "
            + "; ".join(line.strip() for line in lines if "ready" in line or "missing" in line),
            "see the check above: models that are not known downloads must be put in place "
            "by hand (docs/models.md)",
            field="models",
        )
    if events:
        events({"type": "end", "ready": True})
    else:
        print("ready")
    return 0


def add_pull_arguments(p: argparse.ArgumentParser) -> None:
    """`models pull`'s own arguments (models/cli.py adds `--models` and registers it)."""
    from storyshade.models.select import VARIANTS

    p.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="presets, comma-separated (anime-cel,standard), or model names",
    )
    p.add_argument(
        "--variant",
        choices=VARIANTS,
        default="fp16",
        help="which copy of the weights (fp16: half the download; plain weights where a "
        "repository has no fp16 copy)",
    )
    p.add_argument("--token", help="hub token for gated repositories (or set HF_TOKEN)")
    p.add_argument("--dry-run", action="store_true", help="list the files and sizes only")
    p.add_argument("--json", action="store_true", help="with --dry-run: the list as JSON")
    p.add_argument(
        "--events", action="store_true", help="JSON-line events on stdout instead of bars"
    )
    p.set_defaults(func=cmd_pull)
