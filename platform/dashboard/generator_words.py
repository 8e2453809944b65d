"""A generation's details in words: what the generator measured and chose, as a person reads it, not its
internal parameter names ("time_stretch: 1.0417" becomes "Vocal tempo changed by: 4.2% faster")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def _percent(value: Any) -> str:
    return f"{round(float(value) * 100)}%"


def _stretch(value: Any) -> str:
    change = (float(value) - 1.0) * 100
    if abs(change) < 0.05:
        return "unchanged"
    return f"{abs(change):.1f}% {'faster' if change > 0 else 'slower'}"


def _seconds(value: Any) -> str:
    return f"{float(value):,.1f} seconds"


def _semitones(value: Any) -> str:
    steps = int(value)
    if steps == 0:
        return "unchanged"
    return f"{abs(steps)} semitone{'s' if abs(steps) != 1 else ''} {'up' if steps > 0 else 'down'}"


def _decibels(value: Any) -> str:
    return f"{float(value):+.1f} dB"


def _yes_no(value: Any) -> str:
    return "yes" if value else "no"


def _colours(value: Any) -> str:
    return f"{len(value)} colours taken from the artwork" if isinstance(value, list) else str(value)


WORDS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "duration_s": ("Length", _seconds),
    "sample_rate_hz": ("Sample rate", lambda v: f"{int(v):,} Hz"),
    "instrumental_bpm": ("Instrumental tempo", lambda v: f"{float(v):.0f} beats per minute"),
    "vocal_bpm": ("Vocal tempo", lambda v: f"{float(v):.0f} beats per minute"),
    "vocal_bpm_stated": ("Vocal tempo given by you", _yes_no),
    "time_stretch": ("Vocal tempo changed by", _stretch),
    "instrumental_key": ("Instrumental key", str),
    "vocal_key": ("Vocal key", str),
    "pitch_shift_semitones": ("Vocal pitch moved", _semitones),
    "vocal_starts_s": ("Vocal starts at", _seconds),
    "vocal_over_instrumental_db": ("Vocal level over the instrumental", _decibels),
    "instrumental_match_confidence": ("Confidence the instrumental is the licensed work", _percent),
    "width": ("Width", lambda v: f"{int(v):,} pixels"),
    "height": ("Height", lambda v: f"{int(v):,} pixels"),
    "palette_lab": ("Palette", _colours),
    "colour_strength": ("Strength of the artwork's colours", _percent),
    "form_blend": ("Blend of the artwork's shapes", _percent),
    "texture_gain": ("Texture taken from the artwork", _percent),
    "artwork_match_confidence": ("Confidence the artwork is the licensed work", _percent),
    "bytes": ("Size", lambda v: f"{int(v):,} bytes"),
}
HIDDEN = {"vendor_url"}  # the service's address is an internal of the platform's set-up


def describe(details: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(label, value) pairs in the generator's order; unknown keys are named in words from their key."""
    lines: list[tuple[str, str]] = []
    for key, value in (details or {}).items():
        if key in HIDDEN:
            continue
        label, shown = WORDS.get(key, (key.replace("_", " ").capitalize(), str))
        try:
            lines.append((label, shown(value)))
        except (TypeError, ValueError):
            lines.append((label, str(value)))
    return lines
