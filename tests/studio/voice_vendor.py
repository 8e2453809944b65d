"""A reference test double of a vendor's neural voice service, speaking the studio's external-generator
protocol (`tribute-generate-1`, docs/studio.md "A voice service") on 127.0.0.1.

It checks the request the way a real voice service should (the protocol, a `voice` use in the licence, an
audio vocal, the voice's recordings as parents), converts the vocal with the platform's own built-in
converter as the stand-in for the vendor's model, and answers `200` with the WAV as the body. A request
it cannot serve is answered `422` with its reason in plain text, which the studio shows to the fan."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from media.generators.base import GenerationFailed, GenerationRequest, ParentMedia, no_progress
from media.generators.voice_convert import VoiceConversion


@dataclass
class VoiceService:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


def answer(document: dict[str, Any]) -> tuple[int, str, bytes]:
    """(status, content type, body) for one request document."""
    if document.get("protocol") != "tribute-generate-1":
        return 422, "text/plain", b"unknown protocol"
    licence = document.get("licence", {})
    if "voice" not in licence.get("uses", []):
        return 422, "text/plain", b"the licence does not include the voice use"
    vocal = document.get("inputs", {}).get("vocal")
    if not isinstance(vocal, dict) or "data_base64" not in vocal:
        return 422, "text/plain", b"the vocal is missing"
    parents = [
        ParentMedia(p["work"], p["title"], p["media_type"], base64.b64decode(p["data_base64"]))
        for p in document.get("parents", [])
        if str(p.get("media_type", "")).startswith("audio/")
    ]
    if not parents:
        return 422, "text/plain", b"no recordings of the voice were sent"
    request = GenerationRequest(parents=parents, inputs={"vocal": base64.b64decode(vocal["data_base64"])})
    try:
        converted = VoiceConversion().run(request, no_progress)
    except GenerationFailed as exc:
        return 422, "text/plain", str(exc).encode()
    return 200, converted.media_type, converted.data


@contextmanager
def running_voice_service() -> Iterator[VoiceService]:
    state = VoiceService(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            document = json.loads(self.rfile.read(length))
            state.requests.append(document)
            status, content_type, body = answer(document)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/convert"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
