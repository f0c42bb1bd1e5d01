"""A hub on 127.0.0.1 for the download tests (HF_ENDPOINT): serves the repos in ``repos`` (file name ->
bytes, or a ``Stream`` sent slowly) the way huggingface_hub asks for them; a repo named ``silent/*`` is
accepted and never answered. ``open_transfers`` counts the file bodies being sent now."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHA = "0" * 40


class Stream:
    """A file of ``size`` zero bytes sent ``chunk`` bytes every ``pause`` seconds: a hub that trickles
    (64 B every 2 s) or a large download that takes a while."""

    def __init__(self, size: int, chunk: int, pause: float) -> None:
        self.size, self.chunk, self.pause = size, chunk, pause

    def __len__(self) -> int:
        return self.size


def _digest(data, algorithm) -> str:
    return algorithm(data if isinstance(data, bytes) else f"stream-{len(data)}".encode()).hexdigest()


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[str] = []
        self.open_transfers = 0
        self.lock = threading.Lock()
        self.release = threading.Event()  # set on shutdown: silent handlers return
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self.answer(body=False)

            def do_GET(self) -> None:
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                path = self.path.split("?")[0]
                if "/silent/" in path or path.startswith("/silent/"):
                    hub.release.wait(60)  # accepts, never answers
                    return
                repo, files, name = hub.find(path)
                if repo is None:
                    return self.send(404, b'{"error": "Repository not found"}', "application/json", body)
                if name is None and "/tree/" in path:
                    tree = [{"type": "file", "path": f, "size": len(d), "oid": _digest(d, hashlib.sha1)}
                            for f, d in sorted(files.items())]
                    return self.send(200, json.dumps(tree).encode(), "application/json", body)
                if name is None:
                    info = {"id": repo, "modelId": repo, "sha": SHA, "private": False,
                            "siblings": [{"rfilename": f} for f in sorted(files)]}
                    return self.send(200, json.dumps(info).encode(), "application/json", body)
                if name not in files:
                    return self.send(404, b"{}", "application/json", body, {"X-Error-Code": "EntryNotFound"})
                data = files[name]
                headers = {"X-Repo-Commit": SHA, "ETag": f'"{_digest(data, hashlib.sha256)}"'}
                if isinstance(data, Stream):
                    return self.stream(data, body, headers)
                self.send(200, data, "application/octet-stream", body, headers)

            def stream(self, data: Stream, body: bool, headers: dict) -> None:
                self.send(200, b"", "application/octet-stream", False, {**headers, "Content-Length": str(data.size)},
                          length=False)
                if not body:
                    return
                with hub.lock:
                    hub.open_transfers += 1
                try:
                    sent = 0
                    while sent < data.size and not hub.release.is_set():
                        part = min(data.chunk, data.size - sent)
                        self.wfile.write(b"\0" * part)
                        self.wfile.flush()
                        sent += part
                        hub.release.wait(data.pause)
                except OSError:  # the client went away: the transfer is over
                    pass
                finally:
                    with hub.lock:
                        hub.open_transfers -= 1

            def send(self, status, data, kind, body, headers=None, length=True) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                if length:
                    self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def find(self, path: str):
        """(repo, files, file name or None for the repo's info) for an API or resolve URL."""
        for repo, files in self.repos.items():
            for prefix in (f"/api/models/{repo}/revision/", f"/api/models/{repo}"):
                if path == prefix.rstrip("/") or path.startswith(prefix):
                    return repo, files, None
            prefix = f"/{repo}/resolve/"
            if path.startswith(prefix):
                return repo, files, path[len(prefix):].split("/", 1)[1]
        return None, None, None

    def start(self) -> "FakeHub":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
