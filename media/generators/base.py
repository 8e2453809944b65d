"""What every generator is: the inputs it takes, the use classes it needs, and one `run` call.

Pure: no Django. A generator receives bytes (the licensed parent's media and the fan's own inputs, both
already validated by the caller) and returns bytes with what it did; the studio app decides whether the
terms allow it to run, charges for it, and registers the result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# Use classes, as the catalog names them (kept as strings: this module does not import the catalog).
DERIVATIVE = "derivative"
STYLE = "style"
VOICE = "voice"
AI_GENERATE = "ai-generate"

# progress(percent 0-100, what is happening now)
Progress = Callable[[int, str], None]


class GenerationFailed(Exception):
    """The generator could not make a result from these inputs; `code` is stable, the message is for
    people and says what to change."""

    def __init__(self, message: str, *, code: str = "generation_failed") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class InputSpec:
    """One input a generator asks the fan for. `kind` is "image", "audio" or "text"."""

    name: str
    kind: str
    label: str
    help: str = ""
    required: bool = True
    max_length: int = 2000  # text inputs only


@dataclass(frozen=True)
class ParentMedia:
    """A licensed parent's file, as the generator receives it."""

    work_id: int
    title: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class GenerationRequest:
    parents: Sequence[ParentMedia]
    inputs: Mapping[str, bytes | str]
    # Licence context some generators pass on (the external one sends it to the vendor).
    context: Mapping[str, Any] = field(default_factory=dict)
    # What the app kept from an earlier run on these same parents, so a generator need not learn it again
    # (the voice generator's learned voice, under voice_convert.PROFILE_KEY). Empty: learn from the parents.
    prepared: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GeneratedMedia:
    data: bytes
    media_type: str
    extension: str
    # What the generator did, in figures (tempo ratio, semitones, levels...), shown to the fan.
    details: Mapping[str, Any] = field(default_factory=dict)


class Generator(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def parent_kind(self) -> str:
        """The media kind of the licensed parent it works from: "image" or "audio"."""

    @property
    def output_kind(self) -> str: ...
    @property
    def inputs(self) -> tuple[InputSpec, ...]: ...
    @property
    def use_classes(self) -> frozenset[str]: ...

    def run(self, request: GenerationRequest, progress: Progress) -> GeneratedMedia: ...


def metered_uses(generator: Generator) -> list[str]:
    """The use classes charged per access when the generator runs (`derivative` is licensed by the grant,
    not metered)."""
    return sorted(use for use in generator.use_classes if use != DERIVATIVE)


def no_progress(percent: int, stage: str) -> None:
    """A progress callback that ignores everything (for callers that do not show progress)."""
