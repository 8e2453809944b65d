"""A web server on 127.0.0.1 standing for a partner's or a vendor's site: it serves files and feeds,
records the webhooks posted to it, and answers them with `status`."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Site:
    """`files` by path; GET /moved redirects elsewhere; POSTs are kept in `posts` and answered `status`."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "http://169.254.169.254/")
                    self.end_headers()
                    return
                body = site.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body or b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                site.posts.append((dict(self.headers), body))
                self.send_response(site.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> Site:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
