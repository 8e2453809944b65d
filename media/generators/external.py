"""An AI vendor's generation service, called over HTTP on the fan's behalf.

The request is one JSON document: the generator's name, the fan's inputs (media base64-encoded, text as
it is), the licensed parents' files, and the licence context (grant, terms URL, the use and its price).
The answer is the generated media itself (`200` with an image or audio body). Everything about the
answer is bounded: a connect and read timeout, an overall deadline, and a cap on its size checked on the
declared length and again on the bytes read; any other status is a failure with the vendor's own words.
The bytes are then validated like any upload (format by content, pixel and duration caps).

Pure: no Django. Settings turn configurations into instances (see `from_config`).
"""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import urlsplit

from media.errors import MediaError
from media.generators.base import (
    AI_GENERATE,
    DERIVATIVE,
    GeneratedMedia,
    GenerationFailed,
    GenerationRequest,
    InputSpec,
    Progress,
)
from media.validation import Limits, inspect

DEFAULT_TIMEOUT_S: Final = 60.0
DEFAULT_MAX_BYTES: Final = 25 * 1024 * 1024
_CHUNK: Final = 64 * 1024
_ERROR_TEXT_LIMIT: Final = 300
PROTOCOL: Final = "tribute-generate-1"


@dataclass(frozen=True)
class ExternalGenerator:
    name: str
    title: str
    url: str
    parent_kind: str = "image"
    output_kind: str = "image"
    description: str = "An AI vendor's generation service, paid per access on your behalf."
    use_classes: frozenset[str] = frozenset({DERIVATIVE, AI_GENERATE})
    inputs: tuple[InputSpec, ...] = (
        InputSpec(name="prompt", kind="text", label="What should it make?", max_length=2000),
    )
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_bytes: int = DEFAULT_MAX_BYTES
    token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"generator {self.name}: the URL must be http(s)://host/..., got {self.url!r}")
        if self.timeout_s <= 0 or self.max_bytes <= 0:
            raise ValueError(f"generator {self.name}: timeout_s and max_bytes must be positive")

    def run(self, request: GenerationRequest, progress: Progress) -> GeneratedMedia:
        progress(10, "Sending the request to the vendor")
        body = json.dumps(self._document(request), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Accept": f"{self.output_kind}/*",
            "User-Agent": "Tribute-Studio/1",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        outgoing = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310 (scheme checked)
        deadline = time.monotonic() + self.timeout_s
        try:
            with urllib.request.urlopen(outgoing, timeout=self.timeout_s) as answer:  # noqa: S310 (scheme checked)
                progress(50, "Receiving the vendor's result")
                data = self._read_bounded(answer, deadline)
        except urllib.error.HTTPError as exc:
            raise GenerationFailed(
                f"The vendor's service answered {exc.code} {exc.reason}: {_error_text(exc)}",
                code="vendor_error",
            ) from None
        except TimeoutError:
            raise GenerationFailed(
                f"The vendor's service did not answer within {self.timeout_s:g} s.", code="vendor_timeout"
            ) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError | socket.timeout):
                raise GenerationFailed(
                    f"The vendor's service did not answer within {self.timeout_s:g} s.", code="vendor_timeout"
                ) from None
            raise GenerationFailed(
                f"The vendor's service cannot be reached: {exc.reason}.", code="vendor_unreachable"
            ) from None
        except (ConnectionError, OSError) as exc:
            raise GenerationFailed(
                f"The connection to the vendor's service failed: {exc}.", code="vendor_unreachable"
            ) from None
        progress(85, "Checking the vendor's result")
        try:
            info = inspect(data, Limits(max_bytes=self.max_bytes))
        except MediaError as exc:
            raise GenerationFailed(
                f"The vendor's result is not usable media: {exc}", code="vendor_bad_output"
            ) from None
        if info.kind != self.output_kind:
            raise GenerationFailed(
                f"The vendor sent {info.kind}; this generator makes {self.output_kind}.",
                code="vendor_bad_output",
            )
        progress(100, "Done")
        return GeneratedMedia(
            data=data,
            media_type=info.media_type,
            extension=info.extension,
            details={"vendor_url": self.url, "bytes": len(data)},
        )

    def _document(self, request: GenerationRequest) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for name, value in request.inputs.items():
            inputs[name] = (
                {"data_base64": base64.b64encode(value).decode("ascii")}
                if isinstance(value, bytes)
                else value
            )
        return {
            "protocol": PROTOCOL,
            "generator": self.name,
            "output_kind": self.output_kind,
            "inputs": inputs,
            "parents": [
                {
                    "work": parent.work_id,
                    "title": parent.title,
                    "media_type": parent.media_type,
                    "data_base64": base64.b64encode(parent.data).decode("ascii"),
                }
                for parent in request.parents
            ],
            "licence": dict(request.context),
        }

    def _read_bounded(self, answer: Any, deadline: float) -> bytes:
        declared = answer.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            raise GenerationFailed(
                f"The vendor's result is {int(declared)} bytes; the limit is {self.max_bytes} bytes.",
                code="vendor_output_too_large",
            )
        chunks: list[bytes] = []
        received = 0
        while True:
            if time.monotonic() > deadline:
                raise GenerationFailed(
                    f"The vendor's service did not finish answering within {self.timeout_s:g} s.",
                    code="vendor_timeout",
                )
            chunk = answer.read(_CHUNK)
            if not chunk:
                break
            received += len(chunk)
            if received > self.max_bytes:
                raise GenerationFailed(
                    f"The vendor's result is over the limit of {self.max_bytes} bytes.",
                    code="vendor_output_too_large",
                )
            chunks.append(chunk)
        if not received:
            raise GenerationFailed(
                "The vendor's service answered with an empty body.", code="vendor_bad_output"
            )
        return b"".join(chunks)


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(_ERROR_TEXT_LIMIT).decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        text = ""
    return text or "no explanation given"


_INPUT_KINDS: Final = ("image", "audio", "text")


def _inputs_from_config(entries: Any) -> tuple[InputSpec, ...]:
    """The inputs an external generator asks the fan for, from its settings entry: a list of
    {"name", "kind" (image, audio or text), "label", optional "help", "required", "max_length"}."""
    if not isinstance(entries, list) or not entries:
        raise ValueError("inputs must be a non-empty list of {name, kind, label}")
    specs = []
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("kind") not in _INPUT_KINDS or not entry.get("name"):
            raise ValueError(f"an input needs a name and a kind among {', '.join(_INPUT_KINDS)}: {entry!r}")
        specs.append(
            InputSpec(
                name=str(entry["name"]),
                kind=str(entry["kind"]),
                label=str(entry.get("label") or entry["name"]),
                help=str(entry.get("help", "")),
                required=bool(entry.get("required", True)),
                max_length=int(entry.get("max_length", 2000)),
            )
        )
    if len({spec.name for spec in specs}) != len(specs):
        raise ValueError("input names must be distinct")
    return tuple(specs)


def from_config(config: Mapping[str, Any]) -> ExternalGenerator:
    """An external generator from a settings entry: name, title, url, and optionally parent_kind,
    output_kind, use_classes, inputs, timeout_s, max_bytes, token, description. A voice service is one
    whose use_classes include `voice`: it receives every recording of the licensed voice as parents."""
    try:
        if "inputs" in config:
            return replace(
                from_config({key: value for key, value in config.items() if key != "inputs"}),
                inputs=_inputs_from_config(config["inputs"]),
            )
        return ExternalGenerator(
            name=str(config["name"]),
            title=str(config.get("title") or config["name"]),
            url=str(config["url"]),
            parent_kind=str(config.get("parent_kind", "image")),
            output_kind=str(config.get("output_kind", "image")),
            description=str(config.get("description") or ExternalGenerator.description),
            use_classes=frozenset(config.get("use_classes") or (DERIVATIVE, AI_GENERATE)),
            timeout_s=float(config.get("timeout_s", DEFAULT_TIMEOUT_S)),
            max_bytes=int(config.get("max_bytes", DEFAULT_MAX_BYTES)),
            token=str(config.get("token", "")),
        )
    except KeyError as exc:
        raise ValueError(f"an external generator needs {exc.args[0]!r}") from None
