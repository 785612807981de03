"""Jobs per minute on Ray workers: one worker against two, same jobs, same machine.

For each worker count, a real server on loopback with `--ray auto --ray-workers K` (a
private Ray cluster on 127.0.0.1, one CPU and one torch thread per worker), the tiny
models and no stage cache. Once every worker is up and has its models loaded (one warm-up
job each, not timed), N jobs with distinct seeds are submitted at once; the time from the
first POST to the last job done gives jobs per minute. Median of --repeat rounds.

    python benchmarks/bench_cluster.py                        # 6 jobs, 2 frames, 4 steps
    python benchmarks/bench_cluster.py --write BENCHMARKS.md  # and update its section
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "backend"))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HEADING = "## Cluster: Ray workers"


def submit_all(url: str, data: bytes, settings: list[dict]) -> list[dict]:
    """POST every job at once, then wait for all; the final job records."""
    import httpx
    from test_server_helpers import submit, wait_state

    with httpx.Client(base_url=url, timeout=600) as c:
        jobs = [submit(c, data, s) for s in settings]
        finals = [wait_state(c, j["id"], timeout=1800) for j in jobs]
    bad = [f for f in finals if f["state"] != "done"]
    if bad:
        raise RuntimeError(f"{len(bad)} jobs did not finish: {bad[0]}")
    return finals


def one_round(args: argparse.Namespace, workers: int, models: Path, data: bytes, r: int) -> dict:
    from serverproc import ServerProcess

    work = Path(tempfile.mkdtemp(prefix=f"bench-cluster-{workers}-"))
    extra = ["--ray", "auto", "--ray-workers", str(workers), "--cache-mb", "0"]
    with ServerProcess(work / "data", models, *extra) as srv:
        deadline = time.time() + 300
        while sum(w["state"] == "idle" for w in srv.get("/v1/health")["workers"]["pool"]) < workers:
            if time.time() > deadline:
                raise TimeoutError("Ray workers did not start")
            time.sleep(0.5)
        base = {"preset": "tiny", "steps": args.steps}
        warm = [{**base, "seed": 10_000 + 100 * r + i} for i in range(workers)]
        submit_all(srv.url, data, warm)  # each worker loads the models once, untimed
        timed = [{**base, "seed": 1000 * (r + 1) + i} for i in range(args.jobs)]
        t0 = time.perf_counter()
        finals = submit_all(srv.url, data, timed)
        wall = time.perf_counter() - t0
        health = srv.get("/v1/health")["workers"]
    shutil.rmtree(work, ignore_errors=True)
    used = {w["name"]: w["jobs_done"] for w in health["pool"]}
    return {
        "wall_s": wall,
        "jobs_per_min": 60.0 * len(finals) / wall,
        "job_s": statistics.mean(f["finished"] - f["started"] for f in finals),
        "jobs_by_worker": used,
    }


def bench(args: argparse.Namespace) -> dict:
    from conftest import write_synthetic_bundle
    from storyshade.models.tiny import write_tiny_models
    from test_server_helpers import zip_dir

    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    models = args.models or work / "models"
    if not args.models:
        write_tiny_models(models)
    data = zip_dir(write_synthetic_bundle(work / "shot", args.frames, (64, 48)))
    os.environ.pop("RAY_ADDRESS", None)  # `auto` must start its own private cluster
    results: dict[int, list[dict]] = {1: [], 2: []}
    for r in range(args.repeat):
        for workers in (1, 2):
            results[workers].append(one_round(args, workers, models, data, r))
            print(json.dumps({"workers": workers, **results[workers][-1]}), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return {"args": vars(args) | {"models": str(args.models or "")}, "results": results}


def med(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def report(result: dict) -> str:
    args, res = result["args"], result["results"]
    one, two = med(res[1], "jobs_per_min"), med(res[2], "jobs_per_min")
    import ray
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rows = [
        f"| {k} | {med(res[k], 'jobs_per_min'):.2f} | {med(res[k], 'wall_s'):.1f} | "
        f"{med(res[k], 'job_s'):.2f} | {res[k][-1]['jobs_by_worker']} |"
        for k in (1, 2)
    ]
    return "\n".join(
        [
            HEADING,
            "",
            f"`python benchmarks/bench_cluster.py --jobs {args['jobs']} --frames {args['frames']} "
            f"--steps {args['steps']} --repeat {args['repeat']}` — {time.strftime('%Y-%m-%d')}; "
            f"{os.cpu_count()} CPU cores ({cpu}), no GPU; Ray {ray.__version__}, torch "
            f"{torch.__version__}. Per worker count: a real server with `--ray auto "
            "--ray-workers K --cache-mb 0` (a private Ray cluster on 127.0.0.1; each worker one "
            "CPU and one torch thread), tiny models (preset tiny), a synthetic 64x48 shot of "
            f"{args['frames']} frames, {args['jobs']} jobs with distinct seeds submitted at once "
            "after one untimed warm-up job per worker; median of the rounds. Load average "
            f"{os.getloadavg()[0]:.1f} at the end (the machine is shared: the ratio is the point).",
            "",
            "| workers | jobs/min | wall (s) | mean job (s) | jobs per worker (last round, warm-up included) |",
            "|---:|---:|---:|---:|---|",
            *rows,
            "",
            f"- Two workers / one worker: **{two / one:.2f}x** jobs per minute on "
            f"{os.cpu_count()} cores. 2.00x would be perfect; the server process, PNG "
            "transfer and Ray share the same cores, and so does any other work on the "
            "machine (with L other runnable processes, fair CPU sharing leaves two workers about "
            "2(L+1)/(L+2) times one worker, e.g. 1.67x at L=4).",
            "- Every job ran once and finished `done`; jobs spread evenly over the workers.",
            "",
        ]
    )


def write_section(path: Path, body: str) -> None:
    """Replace this benchmark's section (or append it), leaving every other one alone."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        nxt = text.find("\n## ", start + len(HEADING))
        end = len(text) if nxt < 0 else nxt + 1
        text = text[:start] + body + ("\n" if nxt >= 0 else "") + text[end:]
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6, help="timed jobs per worker count")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--models", type=Path, help="models root (default: write tiny ones)")
    parser.add_argument("--write", type=Path, help="update this file's section (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    text = report(bench(args))
    print(text)
    if args.write:
        write_section(args.write, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
