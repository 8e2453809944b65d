"""A small real HTTP service on 127.0.0.1 standing in for an AI vendor's generation endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Vendor:
    """A small real HTTP service on 127.0.0.1 standing in for an AI vendor's generation endpoint."""

    url: str
    mode: dict[str, Any]
    requests: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def running_vendor(body: bytes, content_type: str = "image/jpeg") -> Iterator[Vendor]:
    """Serve until the block ends. `mode` decides each answer: ok, slow, error, endless (see the handler)."""
    state = Vendor(url="", mode={"kind": "ok", "body": body, "content_type": content_type})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            state.requests.append(json.loads(self.rfile.read(length)))
            mode = state.mode
            try:
                if mode["kind"] == "slow":
                    threading.Event().wait(mode["delay_s"])
                if mode["kind"] == "error":
                    body = mode["body"]
                    self.send_response(mode["status"])
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if mode["kind"] == "endless":
                    # No Content-Length: bytes keep coming until the client stops reading.
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    for _ in range(mode["chunks"]):
                        self.wfile.write(b"\0" * 65536)
                    return
                body = mode["body"]
                self.send_response(200)
                self.send_header("Content-Type", mode["content_type"])
                self.send_header("Content-Length", str(mode.get("declared", len(body))))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/generate"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
