"""Fingerprint content and match media against everything fingerprinted so far."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from django.db import IntegrityError, transaction
from PIL import Image

from matching import index
from matching.models import Fingerprint, FingerprintKind
from media import frames
from media.errors import CorruptMedia, MediaError
from media.fingerprint import audio, image, voice
from media.fingerprint.audio_index import AudioIndex
from media.text import embedding, quotes, static
from media.text.document import TextLimits, inspect_text
from media.validation import MediaInfo

Progress = Callable[[int], None]
# Matches below this calibrated confidence are within what unrelated media reach; they are not reported.
REPORT_CONFIDENCE = 0.5

# The claim check of a registration (content_match with `until`) does not query a whole recording: it
# queries windows of CLAIM_WINDOW_S, one every CLAIM_WINDOW_HOP_S from the start and at most
# CLAIM_MAX_WINDOWS spread over a longer one (audio.spread_windows), each reading at most
# CLAIM_POSTINGS_PER_S postings a second of window, and stops at the first window with a match `until`
# accepts. Its cost is bounded per recording whatever the catalogue's size (docs/fingerprinting.md,
# "Registration"); a trace still queries the whole recording.
CLAIM_WINDOW_S = 8.0
CLAIM_WINDOW_HOP_S = 15.0
CLAIM_MAX_WINDOWS = 12
CLAIM_POSTINGS_PER_S = 4000


def _compute(kind: str, data: bytes) -> bytes:
    if kind in (FingerprintKind.TEXT, FingerprintKind.PASSAGES, FingerprintKind.SEARCH):
        # Fingerprints of text are of its normalised form, which every offset refers to.
        text = inspect_text(data, TextLimits(max_bytes=len(data), max_characters=len(data) + 1)).text
        if kind == FingerprintKind.TEXT:
            return quotes.compute(text).to_bytes()
        if kind == FingerprintKind.SEARCH:
            return embedding.compute(text, embedder=static.embed).to_bytes()
        return embedding.compute(text).to_bytes()
    if kind == FingerprintKind.IMAGE:
        fmt = frames.multiframe_format(data)
        if fmt is None:
            return image.compute(data).to_bytes()
        # An animation or a video is registered by its scene-change frames, all in one row.
        chosen = frames.keyframes(data, fmt)
        return frames.bundle([image.compute(f.image, include_mirror=False).to_bytes() for f in chosen])
    if kind == FingerprintKind.AUDIO:
        landmarks = audio.compute(*audio.decode(data))
        if len(landmarks) == 0:  # silence, or no sound steady enough to leave a landmark
            raise CorruptMedia("The audio has no sound to fingerprint.")
        return landmarks.to_bytes()
    # The voice model decodes at the file's own rate: the landmark decoder's 8 kHz would cut the upper
    # band where much of a voice's identity lies.
    return voice.embed_file(data).to_bytes()


def fingerprint_kinds_for(info_kind: str, *, voice_work: bool) -> list[str]:
    """Images get an image fingerprint (an animation: its keyframes'); audio a landmark fingerprint, and a
    voice embedding when the work is a voice (or sung in one); a video both, of its keyframes and of its
    soundtrack."""
    if info_kind == "image":
        return [FingerprintKind.IMAGE]
    if info_kind == "video":
        voice_kinds = [FingerprintKind.VOICE] if voice_work else []
        return [FingerprintKind.IMAGE, FingerprintKind.AUDIO, *voice_kinds]
    if info_kind == "text":
        # In this order: quotes and the retrieval index's passages are stored (and found) in milliseconds,
        # before MiniLM's passages, which take about 40 ms each.
        return [FingerprintKind.TEXT, FingerprintKind.SEARCH, FingerprintKind.PASSAGES]
    return [FingerprintKind.AUDIO, FingerprintKind.VOICE] if voice_work else [FingerprintKind.AUDIO]


@dataclass(frozen=True)
class SkippedStep:
    """A step of fingerprinting or matching that could not run on this media, and why; the other steps'
    results stand without it."""

    step: str  # a fingerprint kind ("image", "audio", "voice"), or "frame" for one frame of a video
    code: str  # the MediaError's code
    reason: str
    time_s: float | None = None  # a frame's time in the media

    @classmethod
    def of(cls, step: str, error: MediaError, time_s: float | None = None) -> SkippedStep:
        return cls(step, error.code, str(error), time_s)


def fingerprints_compute(
    *,
    sha256: str,
    data: bytes,
    kinds: Sequence[str],
    progress: Progress,
    skipped: list[SkippedStep] | None = None,
) -> int:
    """Store the fingerprints of content that does not have them yet. Idempotent; returns how many were new.

    Each kind is computed alone: one the content does not allow (a voice embedding of a recording that is
    mostly music, the soundtrack of a silent video) is added to `skipped` and the others are stored all
    the same. Raises the first MediaError when no kind could be computed.
    """
    created = 0
    failures: list[MediaError] = []
    for done, kind in enumerate(kinds, start=1):
        algorithm = index.CURRENT[FingerprintKind(kind)]
        if not Fingerprint.objects.filter(sha256=sha256, kind=kind, algorithm=algorithm).exists():
            try:
                payload = _compute(kind, data)
            except MediaError as error:
                failures.append(error)
                if skipped is not None:
                    skipped.append(SkippedStep.of(kind, error))
                progress(round(100 * done / len(kinds)))
                continue
            try:
                with transaction.atomic():
                    Fingerprint.objects.create(sha256=sha256, kind=kind, algorithm=algorithm, data=payload)
                created += 1
            except IntegrityError:  # another worker stored the same fingerprint first
                pass
        progress(round(100 * done / len(kinds)))
    if failures and len(failures) == len(kinds):
        raise failures[0]
    return created


@dataclass(frozen=True)
class TextSpan:
    """A passage found on both sides: character offsets in the query and in the source's normalised text."""

    query_start: int
    query_end: int
    source_start: int
    source_end: int


@dataclass(frozen=True)
class ContentMatch:
    """Registered content that a query matches, with where it matches."""

    sha256: str
    kind: str
    score: float
    confidence: float
    region: tuple[float, float, float, float] | None = None
    mirrored: bool = False
    offset_s: float | None = None
    time_scale: float | None = None
    spans: tuple[TextSpan, ...] = ()
    overlap: float | None = None
    # Where in the query (a video, an animation) the match was found: the frame's time in seconds.
    time_s: float | None = None


class TextMatchKind:
    QUOTE = "quote"
    PARAPHRASE = "paraphrase"


def text_match(*, text: str, limit: int = 10) -> list[ContentMatch]:
    """Registered texts this text quotes (kind `quote`) or closely paraphrases (kind `paraphrase`), best
    first. A text found both ways is reported as a quote."""
    indexes = index.current()
    matches: list[ContentMatch] = []
    for found in indexes.text.query(text, limit=limit):
        if found.confidence >= REPORT_CONFIDENCE:
            span = TextSpan(found.query_start, found.query_end, found.ref_start, found.ref_end)
            matches.append(
                ContentMatch(
                    found.ref_id,
                    TextMatchKind.QUOTE,
                    found.score,
                    found.confidence,
                    spans=(span,),
                    overlap=round(found.overlap, 3),
                )
            )
    quoted = {match.sha256 for match in matches}
    if len(indexes.passages):
        from media.text import passages

        cut = passages.split(text) or [passages.Passage(0, len(text), len(text.split()))]
        cut = cut[:50]  # a long query is compared by its first 50 passages
        vectors = embedding.embed([text[p.start : p.end] for p in cut])
        best: dict[str, tuple[float, TextSpan]] = {}
        for passage, found_list in zip(cut, indexes.passages.search(vectors, limit=5), strict=True):
            for ref, cosine in found_list:
                if ref.content in quoted:
                    continue
                if ref.content not in best or cosine > best[ref.content][0]:
                    best[ref.content] = (cosine, TextSpan(passage.start, passage.end, ref.start, ref.end))
        for sha256, (cosine, span) in best.items():
            chance = embedding.confidence(cosine)
            if chance >= REPORT_CONFIDENCE:
                matches.append(
                    ContentMatch(
                        sha256,
                        TextMatchKind.PARAPHRASE,
                        round(cosine, 4),
                        chance,
                        spans=(span,),
                        overlap=None,
                    )
                )
    matches.sort(key=lambda match: -match.confidence)
    return matches[:limit]


def content_match(
    *,
    data: bytes,
    info: MediaInfo,
    limit: int = 10,
    skipped: list[SkippedStep] | None = None,
    until: Callable[[ContentMatch], bool] | None = None,
    exclude: Collection[str] = (),
) -> list[ContentMatch]:
    """Registered content the media matches, best first.

    Each step (the image, or each keyframe of an animation or a video; the audio landmarks; the voice)
    runs alone: a step the media does not allow is added to `skipped` and the others answer. Raises the
    first MediaError when no step could run at all.

    With `until` (the claim check of a registration), the audio (a recording, a video's soundtrack) is
    queried in bounded windows (CLAIM_WINDOW_S...) and no further window is queried once a match is one
    `until` accepts; the matches' time_s is then where their window starts in the media. Audio content
    in `exclude` is never matched (the claim check leaves out the recording being registered).
    """
    indexes = index.current()
    steps_run = 0
    failures: list[MediaError] = []

    def skip(step: str, error: MediaError, time_s: float | None = None) -> None:
        failures.append(error)
        if skipped is not None:
            skipped.append(SkippedStep.of(step, error, time_s))

    best: dict[tuple[str, str], ContentMatch] = {}

    def keep(match: ContentMatch) -> None:
        known = best.get((match.sha256, match.kind))
        if known is None or match.confidence > known.confidence:
            best[(match.sha256, match.kind)] = match

    if info.kind in ("image", "video"):
        fmt = frames.multiframe_format(data)
        pictures: list[tuple[float | None, bytes | Image.Image]] = [(None, data)]
        if fmt is not None:
            try:
                pictures = [(f.time_s, f.image) for f in frames.keyframes(data, fmt)]
            except MediaError as error:
                skip(FingerprintKind.IMAGE, error)
                pictures = []
        for time_s, picture in pictures:
            try:
                query = image.compute(picture)
            except MediaError as error:
                skip("frame" if time_s is not None else FingerprintKind.IMAGE, error, time_s)
                continue
            steps_run += 1
            for ref_id, found in indexes.image.query(query, limit=limit):
                if found.is_match:
                    keep(
                        ContentMatch(
                            index.content_of(ref_id),
                            FingerprintKind.IMAGE,
                            found.score,
                            found.confidence,
                            found.region,
                            found.mirrored,
                            time_s=time_s,
                        )
                    )
    if info.kind in ("audio", "video"):
        try:
            samples, rate = audio.decode(data)
        except MediaError as error:
            skip(FingerprintKind.AUDIO, error)
        else:
            steps_run += 1
            for heard in _audio_matches(
                indexes.audio, samples, rate, limit=limit, until=until, exclude=exclude
            ):
                keep(heard)
        if indexes.voice_ids:
            try:
                embedding = voice.embed_file(data)
            except MediaError as error:
                skip(FingerprintKind.VOICE, error)
            else:
                steps_run += 1
                scores = indexes.voice_vectors @ embedding.vector
                for position in np.argsort(-scores)[:limit]:
                    sha256, score = indexes.voice_ids[int(position)], float(scores[int(position)])
                    if score >= voice.SAME_SPEAKER_THRESHOLD:
                        keep(ContentMatch(sha256, FingerprintKind.VOICE, score, voice.confidence(score)))
    if steps_run == 0 and failures:
        raise failures[0]
    matches = sorted(best.values(), key=lambda match: -match.confidence)
    return matches[:limit]


def _audio_matches(
    audio_index: AudioIndex,
    samples: npt.NDArray[np.float32],
    rate: int,
    *,
    limit: int,
    until: Callable[[ContentMatch], bool] | None,
    exclude: Collection[str],
) -> list[ContentMatch]:
    """The reportable audio matches of the whole recording, or (with `until`) of its claim-check windows
    up to the first one holding a match `until` accepts."""
    spans: list[tuple[int, int, float | None]]
    if until is None:
        spans = [(0, samples.size, None)]
    else:
        length = round(CLAIM_WINDOW_S * rate)
        starts = audio.spread_windows(
            samples.size / rate,
            window_s=CLAIM_WINDOW_S,
            hop_s=CLAIM_WINDOW_HOP_S,
            max_windows=CLAIM_MAX_WINDOWS,
        )
        spans = [(round(start * rate), round(start * rate) + length, start) for start in starts]
    found: list[ContentMatch] = []
    for first, stop, time_s in spans:
        query = audio.compute(samples[first:stop], rate, query=True)
        budget = 0 if until is None else CLAIM_POSTINGS_PER_S
        heard_here = [
            ContentMatch(
                str(heard.ref_id),
                FingerprintKind.AUDIO,
                float(heard.score),
                heard.confidence,
                offset_s=heard.offset_s,
                time_scale=heard.time_scale,
                time_s=time_s,
            )
            for heard in audio_index.query(query, limit=limit, postings_per_s=budget, exclude=exclude)
            if heard.confidence >= REPORT_CONFIDENCE
        ]
        found.extend(heard_here)
        if until is not None and any(until(match) for match in heard_here):
            break
    return found


def passage_search(*, text: str, limit: int) -> list[tuple[embedding.PassageRef, float]]:
    """The registered passages nearest in meaning to the text, best first, with their relevance.

    Two indexes of the same passages: the static one (every text, searchable as soon as it is stored) and
    MiniLM's (computed after it, slower). Each gives its `limit` nearest; a passage's relevance is the mean
    of its MiniLM cosine and its static cosine on MiniLM's scale, or the one of them it has while its
    MiniLM vectors are still being computed (docs/text.md: better than either alone on both kinds of query
    measured).
    """
    indexes = index.current()
    sources = []
    if len(indexes.passages):
        sources.append((indexes.passages, embedding.embed([text]), 0.0))
    if len(indexes.search):
        sources.append((indexes.search, static.embed([text]), static.shift(text)))
    found: dict[tuple[str, int], embedding.PassageRef] = {}
    for passages, vector, _ in sources:
        for ref, _cosine in passages.search(vector, limit=limit)[0]:
            found.setdefault((ref.content, ref.start), ref)
    refs = list(found.values())
    total, counted = np.zeros(len(refs)), np.zeros(len(refs))
    for passages, vector, moved in sources:
        cosines = passages.cosines(vector, refs)
        known = ~np.isnan(cosines)
        total[known] += cosines[known] + moved
        counted[known] += 1
    relevance = (total / counted).tolist()
    order = sorted(range(len(refs)), key=lambda i: (-relevance[i], refs[i].content, refs[i].start))
    return [(refs[i], relevance[i]) for i in order[:limit]]
