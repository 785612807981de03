"""A stand-in for the Hugging Face hub's HTTP routes, serving a folder of repositories
(ROOT/<org>/<name>/...) on 127.0.0.1, for `storyshade models pull` and huggingface_hub's own
download functions (HF_ENDPOINT points them here).

Routes, answered as the hub answers them (huggingface_hub 2.4's hf_api.py/file_download.py):
- GET /api/models/<repo>[/revision/<rev>][?blobs=true]: model info; with `blobs`, each
  sibling's size, blobId and lfs {sha256, size, pointerSize};
- GET /api/models/<repo>/tree/<rev>[/<path>][?recursive=true]: the file tree;
- POST /api/models/<repo>/paths-info/<rev>: info on the paths asked;
- HEAD|GET /<repo>/resolve/<rev>/<path>: small files here (ETag = git blob id), LFS files
  as a 302 to http://localhost:<port>/lfs/<sha256> (another host name, as the hub's CDN is,
  so a HEAD stops at the redirect) carrying X-Linked-Etag and X-Linked-Size; X-Repo-Commit
  always;
- GET|HEAD /lfs/<sha256>: the content, honouring Range (206 + Content-Range).
Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo), which
huggingface_hub turns into its typed errors. A request in proxy form (`GET http://host/...`)
is served too and logged as proxied.

Switches, read from ROOT/_standin.json on every request so a test can flip them live:
`gated` {repo: [tokens with access]}, `throttle` {repo/path: bytes per second}, `sizes`
{repo/path: size to claim}, `corrupt` [repo/path], `vanish` [repo/path] (listed, but 404 on
download), `ignore_range` (answer 200 with the whole file). Every request is appended to
ROOT/_requests.jsonl.

Run: `python tests/hubstandin.py ROOT` prints the port it listens on.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (
    ".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle", ".model", ".h5",
    ".msgpack", ".onnx", ".npy", ".npz", ".zip", ".gz", ".tar",
)  # fmt: skip
CHUNK = 8192


def _file_info(path: Path) -> dict:
    data = path.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    info = {"size": len(data), "blob": blob}
    if path.name.endswith(LFS_SUFFIXES):
        info["sha256"] = hashlib.sha256(data).hexdigest()
    return info


class Hub:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.cache: dict[tuple[str, int, int], dict] = {}

    def config(self) -> dict:
        try:
            return json.loads((self.root / "_standin.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def files(self, repo: str) -> dict[str, dict] | None:
        folder = self.root / repo
        if repo.count("/") != 1 or not folder.is_dir():
            return None
        out = {}
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(folder).as_posix()
            stat = path.stat()
            key = (str(path), stat.st_mtime_ns, stat.st_size)
            with self.lock:
                if key not in self.cache:
                    self.cache[key] = _file_info(path)
                out[rel] = dict(self.cache[key], path=path)
        claimed = self.config().get("sizes", {})
        for rel, info in out.items():
            if f"{repo}/{rel}" in claimed:
                info["size"] = claimed[f"{repo}/{rel}"]
        return out

    @staticmethod
    def commit(files: dict[str, dict]) -> str:
        digest = hashlib.sha1()
        for rel, info in sorted(files.items()):
            digest.update(f"{rel}:{info.get('sha256') or info['blob']}\n".encode())
        return digest.hexdigest()

    def by_sha(self, sha: str) -> tuple[str, dict] | None:
        for org in self.root.iterdir():
            if not org.is_dir():
                continue
            for repo_dir in org.iterdir():
                repo = f"{org.name}/{repo_dir.name}"
                for rel, info in (self.files(repo) or {}).items():
                    if info.get("sha256") == sha:
                        return f"{repo}/{rel}", info
        return None


class Handler(BaseHTTPRequestHandler):
    hub: Hub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- helpers ------------------------------------------------------------------------------
    def _log(self, proxied: bool) -> None:
        entry = {
            "method": self.command,
            "path": self.url_path,
            "range": self.headers.get("Range"),
            "auth": self.headers.get("Authorization"),
            "proxied": proxied,
            "time": time.time(),
        }
        with self.hub.lock, (self.hub.root / "_requests.jsonl").open("a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, data, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(
            status,
            body,
            {
                "Content-Type": "application/json",
                "X-Error-Code": code,
                "X-Error-Message": message,
            },
        )

    def _repo(self, parts: list[str]) -> tuple[str, dict] | None:
        repo = "/".join(parts[:2])
        files = self.hub.files(repo)
        if files is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        return repo, files

    def _revision(self, rev: str, files: dict) -> str | None:
        commit = Hub.commit(files)
        if unquote(rev) not in ("main", commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return None
        return commit

    @staticmethod
    def _entry(rel: str, info: dict) -> dict:
        entry = {"type": "file", "oid": info["blob"], "size": info["size"], "path": rel}
        if "sha256" in info:
            entry["lfs"] = {"oid": info["sha256"], "size": info["size"], "pointerSize": 134}
        return entry

    # -- routes -------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        raw = self.path
        proxied = raw.startswith(("http://", "https://"))
        url = urlsplit(raw)
        self.url_path = url.path
        self._log(proxied)
        query = parse_qs(url.query)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self._api(parts[2:], query)
        if parts[0] == "lfs" and len(parts) == 2:
            found = self.hub.by_sha(parts[1])
            if found is None:
                return self._error(404, "EntryNotFound", "no such object")
            return self._content(*found)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(parts)
        self._error(404, "", "no such route")

    def _api(self, parts: list[str], query: dict) -> None:
        got = self._repo(parts)
        if got is None:
            return
        repo, files = got
        rest = parts[2:]
        gated = repo in self.hub.config().get("gated", {})
        if not rest or rest[0] == "revision":
            if rest and self._revision(rest[1], files) is None:
                return
            siblings = []
            for rel, info in files.items():
                sibling = {"rfilename": rel}
                if "blobs" in query:
                    sibling.update(size=info["size"], blobId=info["blob"])
                    if "sha256" in info:
                        sibling["lfs"] = {
                            "size": info["size"],
                            "sha256": info["sha256"],
                            "pointerSize": 134,
                        }
                siblings.append(sibling)
            return self._json(
                {
                    "_id": hashlib.md5(repo.encode()).hexdigest()[:24],
                    "id": repo,
                    "modelId": repo,
                    "sha": Hub.commit(files),
                    "private": False,
                    "gated": "manual" if gated else False,
                    "disabled": False,
                    "downloads": 0,
                    "likes": 0,
                    "tags": [],
                    "siblings": siblings,
                }
            )
        if rest[0] == "tree" and len(rest) >= 2:
            if self._revision(rest[1], files) is None:
                return
            prefix = "/".join(rest[2:])
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            entries, folders = [], set()
            for rel, info in files.items():
                if prefix and not rel.startswith(prefix + "/"):
                    continue
                tail = rel[len(prefix) + 1 :] if prefix else rel
                if "/" in tail and not recursive:
                    folders.add(f"{prefix}/{tail.split('/')[0]}" if prefix else tail.split("/")[0])
                    continue
                if recursive:
                    pieces = rel.split("/")
                    for i in range(1, len(pieces)):
                        sub = "/".join(pieces[:i])
                        if not prefix or sub.startswith(prefix + "/"):
                            folders.add(sub)
                entries.append(self._entry(rel, info))
            entries += [
                {"type": "directory", "oid": "0" * 40, "size": 0, "path": f}
                for f in sorted(folders)
            ]
            return self._json(entries)
        if rest[0] == "paths-info" and len(rest) >= 2:
            if self._revision(rest[1], files) is None:
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            if self.headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(body or "{}").get("paths", [])
            else:
                paths = parse_qs(body).get("paths", [])
            return self._json([self._entry(p, files[p]) for p in paths if p in files])
        self._error(404, "", "no such route")

    def _resolve(self, parts: list[str]) -> None:
        got = self._repo(parts)
        if got is None:
            return
        repo, files = got
        commit = self._revision(parts[3], files)
        if commit is None:
            return
        rel = "/".join(parts[4:])
        config = self.hub.config()
        tokens = config.get("gated", {}).get(repo)
        if tokens is not None:
            auth = self.headers.get("Authorization", "")
            given = auth.removeprefix("Bearer ").strip() if auth else ""
            if not given:
                return self._error(
                    401, "GatedRepo", f"Access to model {repo} is restricted. Please log in."
                )
            if given not in tokens:
                return self._error(
                    403,
                    "GatedRepo",
                    f"Access to model {repo} is restricted and you are not in the authorized list.",
                )
        info = files.get(rel)
        if info is None or f"{repo}/{rel}" in config.get("vanish", []):
            return self._error(404, "EntryNotFound", f"{rel} does not exist on main")
        if "sha256" in info:
            self._send(
                302,
                b"",
                {
                    # another host, as the hub's CDN is: HEAD stops here with the metadata
                    "Location": f"http://localhost:{self.server.server_address[1]}/lfs/{info['sha256']}",
                    "X-Repo-Commit": commit,
                    "X-Linked-Etag": f'"{info["sha256"]}"',
                    "X-Linked-Size": str(info["size"]),
                    "ETag": f'"{info["blob"]}"',
                },
            )
            return
        self._content(f"{repo}/{rel}", info, {"X-Repo-Commit": commit, "ETag": f'"{info["blob"]}"'})

    def _content(self, key: str, info: dict, extra: dict | None = None) -> None:
        config = self.hub.config()
        data = info["path"].read_bytes()
        if key in config.get("corrupt", []):
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        size = len(data)
        headers = {"Accept-Ranges": "bytes", **(extra or {})}
        if "sha256" in info:
            headers["ETag"] = f'"{info["sha256"]}"'
        start, end = 0, size - 1
        wanted = self.headers.get("Range")
        status = 200
        if wanted and not config.get("ignore_range"):
            spec = wanted.removeprefix("bytes=")
            first, _, last = spec.partition("-")
            start = int(first or 0)
            end = min(int(last), size - 1) if last else size - 1
            if start >= size:
                return self._send(416, b"", {**headers, "Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        body = data[start : end + 1]
        headers["Content-Length"] = str(len(body))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        rate = config.get("throttle", {}).get(key)
        try:
            for i in range(0, len(body), CHUNK):
                self.wfile.write(body[i : i + CHUNK])
                if rate:
                    self.wfile.flush()
                    time.sleep(CHUNK / rate)
        except (BrokenPipeError, ConnectionResetError):
            pass


def serve(root: Path, port: int = 0) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"hub": Hub(root)})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


class HubStandin:
    """The stand-in as a real process on a free loopback port; `url` is its HF_ENDPOINT."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> HubStandin:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(self.root)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{port}"
        return self

    def configure(self, **switches) -> None:
        (self.root / "_standin.json").write_text(json.dumps(switches), encoding="utf-8")

    def requests(self) -> list[dict]:
        log = self.root / "_requests.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def clear_log(self) -> None:
        (self.root / "_requests.jsonl").unlink(missing_ok=True)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def __enter__(self) -> HubStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    httpd = serve(Path(sys.argv[1]), int(os.environ.get("STANDIN_PORT", "0")))
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()
