"""A claim's match in words and in shapes a page can draw: what kind of match it is, how sure the
fingerprints are, and where in the registered work it was found (the trace's evidence on the claim)."""

from __future__ import annotations

from dataclasses import dataclass

from catalog.models import Claim

KIND_WORDS = {
    "image": "Image match: the upload shows a picture found in the registered image",
    "audio": "Audio match: the upload plays a recording found in the registered audio",
    "voice": "Voice match: the upload's voice sounds like the registered voice",
    "quote": "Quote: the copy repeats words of the registered text",
    "paraphrase": "Paraphrase: the copy says what the registered text says in other words",
    "manual": "Filed by hand: the claimant's statement is the evidence",
}


@dataclass(frozen=True)
class Region:
    """A rectangle in percent of the registered image's width and height (an SVG viewBox of 100 x 100)."""

    x: float
    y: float
    width: float
    height: float

    @property
    def covers_percent(self) -> int:
        return round(self.width * self.height / 100)


@dataclass(frozen=True)
class MatchFacts:
    kind_words: str
    confidence_percent: str
    region: Region | None
    mirrored: bool
    details: list[str]


def region_of(evidence: dict[str, object]) -> Region | None:
    """The evidence's (x, y, w, h) fractions, checked: anything malformed is not drawn."""
    value = evidence.get("region")
    if not isinstance(value, list | tuple) or len(value) != 4:
        return None
    try:
        x, y, width, height = (min(max(float(part), 0.0), 1.0) for part in value)
    except (TypeError, ValueError):
        return None
    if width <= 0 or height <= 0:
        return None
    return Region(round(x * 100, 2), round(y * 100, 2), round(width * 100, 2), round(height * 100, 2))


def confidence_text(confidence: float) -> str:
    """0.9734 -> '97%'; never '100%' for a probability below one, never '0%' above zero."""
    percent = float(confidence) * 100
    if 0 < percent < 1:
        return "under 1%"
    if 99 < percent < 100:
        return "over 99%"
    return f"{round(percent)}%"


def _seconds(value: float) -> str:
    total = max(0.0, value)
    minutes, seconds = divmod(total, 60)
    return f"{int(minutes)}:{seconds:04.1f}"


def facts_of(claim: Claim) -> MatchFacts:
    evidence = claim.evidence if isinstance(claim.evidence, dict) else {}
    region = region_of(evidence)
    mirrored = bool(evidence.get("mirrored"))
    details: list[str] = []
    if region is not None:
        details.append(
            f"The upload shows {region.covers_percent}% of the registered image (outlined on it)."
            if region.covers_percent < 95
            else "The upload shows the whole registered image."
        )
    if mirrored:
        details.append("The upload is a mirror image (flipped left to right) of the registered work.")
    offset = evidence.get("offset_s")
    if isinstance(offset, int | float):
        details.append(f"The match starts {_seconds(float(offset))} into the registered recording.")
    scale = evidence.get("time_scale")
    if isinstance(scale, int | float) and abs(float(scale) - 1.0) >= 0.005:
        change = (float(scale) - 1.0) * 100
        details.append(f"The upload plays {abs(change):.1f}% {'faster' if change > 0 else 'slower'}.")
    overlap = evidence.get("overlap")
    if isinstance(overlap, int | float):
        details.append(f"{round(float(overlap) * 100)}% of the copied passage's word sequences are found.")
    return MatchFacts(
        kind_words=KIND_WORDS.get(claim.match_kind, f"{claim.match_kind.capitalize()} match"),
        confidence_percent=confidence_text(claim.confidence),
        region=region,
        mirrored=mirrored,
        details=details,
    )
