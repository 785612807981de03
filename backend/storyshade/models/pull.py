"""`storyshade models pull`: fetch exactly the files a preset's models need into the layout
discovery reads. The only code in StoryShade that downloads; nothing calls it on its own.

A pull runs in three steps, each finished before the next starts:

1. **Want** (offline): the names asked become sources-table entries (a preset names its
   models through its settings; a model is named directly).
2. **Plan** (metadata only): each repository's file list with sizes and hashes, one
   variant selected (`models/select.py`); what an earlier, interrupted pull left is
   counted. The sum is checked against the free space before a byte is written.
3. **Fetch**: each model is written under a hidden name (`.<name>.pull/`, which discovery
   skips), one lock per model so two pulls never write one file (the second waits, then
   finds the model there), each file continued where it stopped (HTTP Range) and checked
   against the hub's hash (sha256 for LFS files, the git blob id for small ones) before it
   gets its name; the folder is renamed into place only when every file is there.

A hidden folder from an older run is resumed when it records the same repository, commit and
variant, and removed otherwise; it is never loaded.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
import warnings
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storyshade.cancel import CancelToken
from storyshade.errors import Cancelled, StoryShadeError
from storyshade.models.hub import Hub, HubUnreachable, PullError, is_transient
from storyshade.models.select import Take, select
from storyshade.models.sources import SOURCES, Source, source_for
from storyshade.progress import Reporter
from storyshade.wire.states import Stage

LOCKS = ".storyshade-pull-locks"
RECORD = ".storyshade-pull.json"  # in the hidden folder while pulling, kept in the model after
FORMAT, VERSION = "storyshade.pull", 1
MARGIN_BYTES = 256 << 20  # room left free beside the pull: logs, temp files, the OS
MARGIN_SHARE = 0.02
CHUNK = 1 << 20
PROGRESS_EVERY_S = 0.25
RATE_WINDOW_S = 10.0
RETRIES = 5  # dropped connections resumed per file before giving up
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def size_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# -- 1. want ---------------------------------------------------------------------------------
@dataclass
class Wanted:
    """What the names asked for, resolved without a network."""

    sources: list[Source] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)  # preset specs, checked afterwards
    models: list[str] = field(default_factory=list)  # model names asked directly
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (role, name) not in the table

    def add(self, source: Source) -> None:
        if source not in self.sources:
            self.sources.append(source)


def wanted(names: list[str]) -> Wanted:
    """Each NAME is a model of the sources table or a comma-separated preset spec."""
    from storyshade.models.check import needs_of
    from storyshade.presets import resolve

    out = Wanted()
    for name in names:
        source = source_for(name)
        if source is not None:
            out.add(source)
            out.models.append(source.name)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # odd combinations are not a pull's business
                settings = resolve(name)
        except StoryShadeError as exc:
            if exc.field != "preset":
                raise
            raise _unknown_name(name) from None
        out.presets.append(name)
        for need in needs_of(settings):
            found = source_for(need.name)
            if found is None:
                out.unknown.append((need.role, need.name))
            else:
                out.add(found)
    return out


def _unknown_name(name: str) -> StoryShadeError:
    from storyshade.presets import scan

    presets = ", ".join(sorted(scan()[0]))
    return StoryShadeError(
        f"'{name}' is neither a preset nor a model StoryShade knows how to download",
        f"name presets (comma-separated, e.g. anime-cel,standard): {presets}; or models: "
        f"{', '.join(sorted(SOURCES))}",
        field="names",
    )


# -- 2. plan ---------------------------------------------------------------------------------
@dataclass
class ModelPlan:
    """One model: where it goes, which files at which commit, what is already on disk."""

    source: Source
    dest: Path
    commit: str = ""
    takes: list[Take] = field(default_factory=list)
    have: int = 0  # bytes an earlier, interrupted pull left (resumed, not fetched again)
    present: bool = False  # the model is already in place: nothing to fetch

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def size(self) -> int:
        return sum(t.remote.size for t in self.takes)

    @property
    def staging(self) -> Path:
        return self.dest.parent / f".{self.dest.name}.pull"

    @property
    def lock_path(self) -> Path:
        """In one hidden folder of the models root (kept: removing a lock file another
        process waits on would let a third one in)."""
        return self.dest.parent.parent / LOCKS / f"{self.dest.parent.name}.{self.dest.name}.lock"

    def record(self, variant: str, complete: bool) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "repo": self.source.repo,
            "commit": self.commit,
            "variant": variant,
            "complete": complete,
            "files": {
                t.local: {
                    "path": t.remote.path,
                    "size": t.remote.size,
                    "sha256": t.remote.sha256,
                    "blob_id": t.remote.blob_id,
                }
                for t in self.takes
            },
        }


@dataclass
class Plan:
    root: Path
    variant: str
    want: Wanted
    models: list[ModelPlan] = field(default_factory=list)

    @property
    def fetching(self) -> list[ModelPlan]:
        return [m for m in self.models if not m.present]

    @property
    def total(self) -> int:
        return sum(m.size for m in self.fetching)

    @property
    def have(self) -> int:
        return sum(m.have for m in self.fetching)

    @property
    def needed(self) -> int:
        return self.total - self.have

    def as_json(self) -> dict[str, Any]:
        """The plan as the server's dry run and `--dry-run --json` show it."""
        return {
            "variant": self.variant,
            "models": [
                {
                    "name": m.name,
                    "repo": m.source.repo,
                    "commit": m.commit,
                    "kind": m.source.kind,
                    "dest": m.dest.relative_to(self.root).as_posix(),
                    "present": m.present,
                    "bytes": m.size,
                    "have": m.have,
                    "files": [{"path": t.local, "bytes": t.remote.size} for t in m.takes],
                }
                for m in self.models
            ],
            "total_bytes": self.total,
            "have_bytes": self.have,
            "needed_bytes": self.needed,
            "free_bytes": free_space(self.root),
            "margin_bytes": margin(self.needed),
            "not_downloadable": [{"role": r, "name": n} for r, n in self.want.unknown],
        }


def read_record(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return data


def _resumable(record: dict[str, Any] | None, source: Source, variant: str) -> bool:
    return bool(
        record
        and record.get("version") == VERSION
        and record.get("repo") == source.repo
        and record.get("variant") == variant
        and record.get("commit")
    )


def _on_disk(model: ModelPlan) -> int:
    """Bytes of the planned files an earlier run left in the hidden folder."""
    have = 0
    for take in model.takes:
        done, part = model.staging / take.local, _part(model.staging / take.local)
        if done.is_file() and done.stat().st_size == take.remote.size:
            have += take.remote.size
        elif part.is_file():
            have += min(part.stat().st_size, take.remote.size)
    return have


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def make_plan(
    want: Wanted, root: Path, variant: str, hub: Hub, reporter: Reporter | None = None
) -> Plan:
    """Ask the hub what each model's files are (metadata only; nothing is written)."""
    reporter = reporter or Reporter()
    plan = Plan(root, variant, want)
    snapshots: dict[tuple[str, str], Any] = {}
    for source in want.sources:
        model = ModelPlan(source, source.dest(root))
        plan.models.append(model)
        if model.dest.exists():
            model.present = True
            continue
        record = read_record(model.staging)
        revision = source.revision
        if _resumable(record, source, variant):
            revision = str(record["commit"])  # type: ignore[index]  # continue the same files
        key = (source.repo, revision)
        if key not in snapshots:
            reporter.note(f"asking {hub.endpoint} about {source.repo}")
            try:
                snapshots[key] = hub.snapshot(source.repo, revision)
            except PullError:
                if revision == source.revision:
                    raise
                snapshots[key] = hub.snapshot(source.repo, source.revision)  # commit gone
        snap = snapshots[key]
        model.commit = snap.commit
        model.takes = select(source, snap.files, variant)
        if snap.gated:  # refuse now, before another model's files are written
            hub.check_access(source.repo, snap.commit, model.takes[0].remote.path)
        if record and record.get("commit") == model.commit and _resumable(record, source, variant):
            model.have = _on_disk(model)
    return plan


def free_space(root: Path) -> int:
    here = root
    while not here.exists() and here != here.parent:
        here = here.parent
    return shutil.disk_usage(here).free


def margin(needed: int) -> int:
    return MARGIN_BYTES + int(needed * MARGIN_SHARE)


def check_space(plan: Plan) -> None:
    """Refuse before a byte is written when the disk cannot hold the pull."""
    free, extra = free_space(plan.root), margin(plan.needed)
    if plan.needed + extra > free:
        raise PullError(
            f"not enough disk space in {plan.root}: the pull needs {size_text(plan.needed)} "
            f"({plan.needed} bytes) plus {size_text(extra)} kept free, and "
            f"{size_text(free)} ({free} bytes) is free",
            f"free at least {size_text(plan.needed + extra - free)} on that disk, or pull "
            "into a folder on another disk with --models DIR",
            field="models",
        )


def check_writable(root: Path) -> None:
    """The models folder must exist or be creatable, and take new files."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".storyshade-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StoryShadeError(
            f"the models folder {root} cannot be written ({exc.strerror or exc})",
            "pull into a folder you can write with --models DIR, or fix its permissions",
            field="models",
        ) from None


def manual_steps(want: Wanted, root: Path) -> str:
    """How to get the models without this machine reaching the hub."""
    steps = "; ".join(
        f"{s.name}: {s.what()} from {s.url()}/tree/{s.revision} into {s.dest(root)}"
        for s in want.sources
    )
    return (
        "or run the same `storyshade models pull` on a machine that can reach the hub and "
        f"copy its models folder here; or download by hand: {steps} (an fp16 file such as "
        "x.fp16.safetensors is saved as x.safetensors; docs/models.md)"
    )


# -- 3. fetch --------------------------------------------------------------------------------
class Meter:
    """Bytes done of the whole pull and of the current file, with rate and time left,
    reported as `downloading` progress events at most every PROGRESS_EVERY_S."""

    def __init__(self, reporter: Reporter, total: int, done: int) -> None:
        self.reporter, self.total, self.done = reporter, total, done
        self.samples: deque[tuple[float, int]] = deque([(time.monotonic(), done)])
        self.last = 0.0
        self.model = self.file = ""
        self.file_done = self.file_total = 0

    def start(self, model: str, file: str, size: int, have: int) -> None:
        self.model, self.file, self.file_total, self.file_done = model, file, size, have
        self.emit(force=True)

    def add(self, n: int) -> None:
        self.done += n
        self.file_done += n
        self.emit()

    def rate(self, now: float) -> float:
        while len(self.samples) > 1 and now - self.samples[0][0] > RATE_WINDOW_S:
            self.samples.popleft()
        then, done = self.samples[0]
        return (self.done - done) / (now - then) if now > then else 0.0

    def emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        rate = self.rate(now)
        self.samples.append((now, self.done))
        info: dict[str, Any] = {
            "model": self.model,
            "file": self.file,
            "file_done": self.file_done,
            "file_total": self.file_total,
            "rate": round(rate),
        }
        if rate > 0:
            info["eta_s"] = round((self.total - self.done) / rate, 1)
        self.reporter.stage(Stage.DOWNLOADING, self.done, self.total, **info)


class Hasher:
    """The hub's hash of a file: sha256 of the content for LFS files, the git blob id
    (sha1 of "blob <size>\\0" + content) for the others."""

    def __init__(self, take: Take) -> None:
        self.expected = take.remote.sha256 or take.remote.blob_id
        self.lfs = take.remote.sha256 is not None
        self.h = hashlib.sha256() if self.lfs else hashlib.sha1()
        if not self.lfs:
            self.h.update(f"blob {take.remote.size}\0".encode())

    def update(self, data: bytes) -> None:
        self.h.update(data)

    def ok(self) -> bool:
        return self.expected is None or self.h.hexdigest() == self.expected


def _hash_prefix(path: Path, hasher: Hasher) -> None:
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            hasher.update(block)


def _kept_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@dataclass
class Fetcher:
    """Fetches one plan's files, reporting to a Meter; stops at `cancel`."""

    plan: Plan
    hub: Hub
    reporter: Reporter
    cancel: CancelToken
    meter: Meter

    def run(self) -> None:
        for model in self.plan.fetching:
            with model_lock(model, self.reporter, self.cancel):
                before = self.meter.done
                if model.dest.exists():  # a pull that held the lock before us finished it
                    self.reporter.note(f"{model.name} was completed by another pull")
                else:
                    self._model(model)
                self.meter.done = before + (model.size - model.have)
                self.meter.emit(force=True)

    def _model(self, model: ModelPlan) -> None:
        record = read_record(model.staging)
        if model.staging.exists() and not (
            _resumable(record, model.source, self.plan.variant)
            and record.get("commit") == model.commit  # type: ignore[union-attr]
        ):
            shutil.rmtree(model.staging)
            self.reporter.note(
                f"removed an unfinished download of {model.name} left by an older run "
                "(another version, revision or variant); starting it again"
            )
        model.staging.mkdir(parents=True, exist_ok=True)
        _write_json(model.staging / RECORD, model.record(self.plan.variant, complete=False))
        for take in model.takes:
            self.cancel.check()
            self._file(model, take)
        self._finish(model)
        self.reporter.note(f"{model.name}: {len(model.takes)} files in {model.dest}")

    def _file(self, model: ModelPlan, take: Take) -> None:
        final = model.staging / take.local
        size = take.remote.size
        if final.is_file() and final.stat().st_size == size:
            return  # fetched and checked by an earlier run
        part = _part(final)
        part.parent.mkdir(parents=True, exist_ok=True)
        have = part.stat().st_size if part.is_file() else 0
        if have > size:
            part.unlink()
            have = 0
        self.meter.start(model.name, take.local, size, have)
        for attempt in (1, 2):  # a second, clean attempt when the hash does not match
            if self._stream(model, take, part, have).ok():
                os.replace(part, final)
                self.meter.emit(force=True)
                return
            part.unlink()
            self.meter.add(-size)
            have = 0
            if attempt == 2:
                raise PullError(
                    f"{model.source.repo}/{take.remote.path} does not match the hub's hash "
                    "after two downloads",
                    "something between here and the hub changes the data (a proxy or a "
                    "failing disk?); pull again later",
                    field="models",
                )
            self.reporter.note(f"{take.local} did not match its hash; downloading it again")

    def _stream(self, model: ModelPlan, take: Take, part: Path, have: int) -> Hasher:
        """Append the rest of the file to `part` from byte `have`, hashing as it goes;
        dropped connections are resumed up to RETRIES times in a row."""
        size, retries = take.remote.size, RETRIES
        hasher = Hasher(take)
        if have:
            _hash_prefix(part, hasher)
        while have < size:
            try:
                with self.hub.open(model.source.repo, model.commit, take.remote.path, have) as r:
                    if have and r.status_code != 206:  # the range was ignored: start over
                        self.meter.add(-have)
                        have, hasher = 0, Hasher(take)
                        part.write_bytes(b"")
                    with part.open("ab") as fh:
                        # as it arrives (no re-chunking): progress and resume stay fine-grained
                        for chunk in r.iter_bytes():
                            self.cancel.check()
                            self._write(fh, chunk, model, take)
                            hasher.update(chunk)
                            have += len(chunk)
                            self.meter.add(len(chunk))
                            retries = RETRIES
                if have != size:
                    raise PullError(
                        f"{model.source.repo}/{take.remote.path}: the hub sent {have} bytes "
                        f"where its file list says {size}",
                        "pull again later; if it persists, the repository is changing",
                        field="models",
                    )
            except Exception as exc:
                if not is_transient(exc) or retries == 0:
                    raise self._error(exc, model, take) from None
                retries -= 1
                self.reporter.note(
                    f"the connection dropped at {size_text(have)} of {take.local}; resuming"
                )
                self.cancel.wait(min(2 ** (RETRIES - retries), 10))
                self.cancel.check()
        return hasher

    def _write(self, fh: Any, chunk: bytes, model: ModelPlan, take: Take) -> None:
        try:
            fh.write(chunk)
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            try:
                fh.close()  # flush what fits: it is kept for resuming
            except OSError:
                pass
            kept = _kept_bytes(model.staging)
            rest = self.plan.total - self.meter.done
            raise PullError(
                f"the disk filled up while writing {take.local} of {model.name} ({exc.strerror})",
                f"{size_text(kept)} already downloaded are kept in {model.staging} and the "
                f"pull continues from there: free at least {size_text(rest + margin(rest))} "
                f"(now free: {size_text(free_space(self.plan.root))}) and run it again",
                field="models",
            ) from None

    def _error(self, exc: Exception, model: ModelPlan, take: Take) -> Exception:
        if isinstance(exc, StoryShadeError | OSError | Cancelled):
            return exc
        return self.hub.error(exc, model.source.repo, take.remote.path)

    def _finish(self, model: ModelPlan) -> None:
        """Only the planned files and the record stay; then the folder (or the single
        file) takes its visible name in one rename."""
        planned = {t.local for t in model.takes} | {RECORD}
        for path in sorted(model.staging.rglob("*"), reverse=True):
            rel = path.relative_to(model.staging).as_posix()
            if path.is_file() and rel not in planned:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        _write_json(model.staging / RECORD, model.record(self.plan.variant, complete=True))
        if model.source.layout == "file":
            os.replace(model.staging / model.takes[0].local, model.dest)
            shutil.rmtree(model.staging)
        else:
            os.replace(model.staging, model.dest)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def model_lock(model: ModelPlan, reporter: Reporter, cancel: CancelToken) -> Iterator[None]:
    """One writer per model, across processes (an OS file lock, released if the holder
    dies): a second pull waits here, then finds the model in place."""
    from filelock import FileLock, Timeout

    model.lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(model.lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        reporter.note(f"another pull is downloading {model.name}; waiting for it to finish")
        while True:
            cancel.check()
            try:
                lock.acquire(timeout=1)
                break
            except Timeout:
                continue
    try:
        yield
    finally:
        lock.release()


def fetch(
    plan: Plan, hub: Hub, reporter: Reporter | None = None, cancel: CancelToken | None = None
) -> None:
    """Download everything the plan lacks (after `check_space`)."""
    reporter = reporter or Reporter()
    meter = Meter(reporter, plan.total, plan.have)
    try:
        Fetcher(plan, hub, reporter, cancel or CancelToken(), meter).run()
    except HubUnreachable as exc:
        raise with_manual_steps(exc, plan.want, plan.root) from None


def with_manual_steps(exc: HubUnreachable, want: Wanted, root: Path) -> HubUnreachable:
    return HubUnreachable(exc.problem, f"{exc.fix}; {manual_steps(want, root)}", field=exc.field)
