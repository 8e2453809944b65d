"""Copies and quotes in text: winnowed word shingles with character offsets on both sides.

A fingerprint of a reference text is a winnowed subset (in the style of MOSS: the smallest hash of every
window of `WINDOW` consecutive shingle hashes) of the hashes of its `SHINGLE_WORDS`-word shingles, each with
the word position and the character span it came from. A query is not winnowed: every one of its shingle
hashes is looked up, so any reference fingerprint whose words survive in the query is found, however the
query's windows fall. Hits of one reference are chained along a diagonal (reference position minus query
position, allowed to drift by a few words for dropped or inserted words); the chain's weight, with common
shingles counting less, is the score, and the chain's ends give the passage on both sides.

Pure: numpy only. `ALGORITHM` is stored next to every fingerprint.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from media.errors import CorruptMedia

ALGORITHM = "txt-winnow-k3w3-v1"
SHINGLE_WORDS = 3
WINDOW = 3
# A chain step may move the diagonal by this many words (words dropped or inserted between two hits) and
# skip this many query words (a run of edits).
MAX_DRIFT = 4
MAX_GAP = 24
# Shingles met in more references than this say nothing about where a quote came from; they are skipped.
MAX_POSTINGS = 400
# A chain scoring this much is reported (calibrated in bench/text.py on real text: see docs/text.md).
REPORT_SCORE = 4.0
MATCH_SCORE = 5.0
_MAGIC = b"TXQ1"
_WORD = re.compile(r"\w+", re.UNICODE)
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))

RefId = TypeVar("RefId")


@dataclass(frozen=True)
class Words:
    """A text's words (lower-cased) with their character spans."""

    hashes: npt.NDArray[np.uint64]
    starts: npt.NDArray[np.int32]
    ends: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.hashes)


def _word_hash(word: str) -> int:
    data = word.encode("utf-8")
    return (zlib.crc32(data) << 32) | zlib.adler32(data)


def words(text: str) -> Words:
    found = list(_WORD.finditer(text.lower()))
    return Words(
        hashes=np.fromiter((_word_hash(m.group()) for m in found), dtype=np.uint64, count=len(found)),
        starts=np.fromiter((m.start() for m in found), dtype=np.int32, count=len(found)),
        ends=np.fromiter((m.end() for m in found), dtype=np.int32, count=len(found)),
    )


def shingle_hashes(tokens: Words, k: int = SHINGLE_WORDS) -> npt.NDArray[np.uint64]:
    """One 64-bit hash per run of k consecutive words (empty when the text has fewer than k words)."""
    count = len(tokens) - k + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        mixed = np.zeros(count, dtype=np.uint64)
        for offset in range(k):
            part = tokens.hashes[offset : offset + count] * _MIX[offset % len(_MIX)]
            mixed = (mixed ^ part) * _MIX[(offset + 1) % len(_MIX)]
            mixed ^= mixed >> np.uint64(29)
    return mixed & _MASK


@dataclass(frozen=True)
class TextFingerprint:
    """The winnowed shingles of a reference text: hash, word position and character span of each."""

    hashes: npt.NDArray[np.uint64]
    positions: npt.NDArray[np.int32]
    char_starts: npt.NDArray[np.int32]
    char_ends: npt.NDArray[np.int32]
    word_count: int

    def to_bytes(self) -> bytes:
        header = _MAGIC + struct.pack("<II", len(self.hashes), self.word_count)
        return header + b"".join(
            array.astype(array.dtype.newbyteorder("<")).tobytes()
            for array in (self.hashes, self.positions, self.char_starts, self.char_ends)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> TextFingerprint:
        if data[:4] != _MAGIC or len(data) < 12:
            raise CorruptMedia("Not a text fingerprint.")
        count, word_count = struct.unpack("<II", data[4:12])
        if len(data) != 12 + count * 20:
            raise CorruptMedia("The text fingerprint is truncated.")
        offset = 12
        hashes = np.frombuffer(data, dtype="<u8", count=count, offset=offset).astype(np.uint64)
        offset += 8 * count
        arrays = []
        for _ in range(3):
            arrays.append(np.frombuffer(data, dtype="<i4", count=count, offset=offset).astype(np.int32))
            offset += 4 * count
        return cls(hashes, arrays[0], arrays[1], arrays[2], word_count)


def compute(text: str, *, window: int = WINDOW) -> TextFingerprint:
    """The fingerprint of a reference text (its offsets refer to `text` as given)."""
    tokens = words(text)
    hashes = shingle_hashes(tokens)
    if len(hashes) == 0:
        empty_i = np.zeros(0, dtype=np.int32)
        return TextFingerprint(np.zeros(0, dtype=np.uint64), empty_i, empty_i, empty_i, len(tokens))
    if len(hashes) <= window:
        chosen = np.array([int(np.argmin(hashes))], dtype=np.int64)
    else:
        windows = np.lib.stride_tricks.sliding_window_view(hashes, window)
        # The rightmost minimum of each window (MOSS's rule), kept once per position.
        rightmost = window - 1 - np.argmin(windows[:, ::-1], axis=1)
        chosen = np.unique(np.arange(len(windows)) + rightmost)
    last_word = chosen + SHINGLE_WORDS - 1
    return TextFingerprint(
        hashes=hashes[chosen],
        positions=chosen.astype(np.int32),
        char_starts=tokens.starts[chosen],
        char_ends=tokens.ends[last_word],
        word_count=len(tokens),
    )


@dataclass(frozen=True)
class QuoteMatch(Generic[RefId]):
    """A passage of the query found in a reference, with where it is on both sides."""

    ref_id: RefId
    score: float
    confidence: float
    query_start: int
    query_end: int
    ref_start: int
    ref_end: int
    matched_shingles: int
    query_words: int  # words of the query passage

    @property
    def is_match(self) -> bool:
        return self.score >= MATCH_SCORE

    @property
    def overlap(self) -> float:
        """Share of the query passage's shingles found in the reference (1.0 for a verbatim quote; the
        reference keeps only about 2/(WINDOW+1) of its shingles, so this is scaled back up)."""
        expected = max(1.0, (self.query_words - SHINGLE_WORDS + 1) * 2 / (WINDOW + 1))
        return min(1.0, self.matched_shingles / expected)


def confidence(score: float) -> float:
    """P(the passage was copied) from the chain score: a logistic fitted on the benchmark (docs/text.md)."""
    return 1.0 / (1.0 + math.exp(-1.6 * (score - 5.0)))


@dataclass
class QuoteIndex(Generic[RefId]):
    """Reference fingerprints in one table sorted by hash; additions wait and are merged on the next query."""

    _ids: list[RefId] = field(default_factory=list)
    _hashes: npt.NDArray[np.uint64] = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    _refs: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    _positions: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    _char_starts: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    _char_ends: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    _pending: list[tuple[int, TextFingerprint]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ref_id: RefId, fingerprint: TextFingerprint) -> None:
        self._pending.append((len(self._ids), fingerprint))
        self._ids.append(ref_id)

    @property
    def entries(self) -> int:
        self._merge()
        return len(self._hashes)

    @property
    def nbytes(self) -> int:
        self._merge()
        return sum(
            a.nbytes for a in (self._hashes, self._refs, self._positions, self._char_starts, self._char_ends)
        )

    def _merge(self) -> None:
        if not self._pending:
            return
        parts = [(self._hashes, self._refs, self._positions, self._char_starts, self._char_ends)]
        for ref, fp in self._pending:
            parts.append(
                (
                    fp.hashes,
                    np.full(len(fp.hashes), ref, dtype=np.int32),
                    fp.positions,
                    fp.char_starts,
                    fp.char_ends,
                )
            )
        self._pending = []
        hashes = np.concatenate([p[0] for p in parts])
        order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[order]
        self._refs = np.concatenate([p[1] for p in parts])[order]
        self._positions = np.concatenate([p[2] for p in parts])[order]
        self._char_starts = np.concatenate([p[3] for p in parts])[order]
        self._char_ends = np.concatenate([p[4] for p in parts])[order]

    def query(
        self, text: str, *, limit: int = 10, min_score: float = REPORT_SCORE
    ) -> list[QuoteMatch[RefId]]:
        """References the text quotes, best first: one match per reference (its best chain)."""
        self._merge()
        tokens = words(text)
        hashes = shingle_hashes(tokens)
        if len(hashes) == 0 or len(self._hashes) == 0:
            return []
        lefts = np.searchsorted(self._hashes, hashes, side="left")
        rights = np.searchsorted(self._hashes, hashes, side="right")
        counts = rights - lefts
        useful = np.nonzero((counts > 0) & (counts <= MAX_POSTINGS))[0]
        if len(useful) == 0:
            return []
        query_positions = np.repeat(useful, counts[useful])
        entry = np.concatenate([np.arange(lefts[i], rights[i]) for i in useful])
        weights = np.repeat(1.0 / (1.0 + np.log(counts[useful])), counts[useful])
        refs = self._refs[entry]
        by_ref: dict[int, list[int]] = {}
        totals = np.bincount(refs, weights=weights)
        candidates = np.nonzero(totals >= min_score)[0]
        if len(candidates) == 0:
            return []
        candidate_set = set(candidates.tolist())
        for i, ref in enumerate(refs.tolist()):
            if ref in candidate_set:
                by_ref.setdefault(ref, []).append(i)
        found: list[QuoteMatch[RefId]] = []
        for ref, rows in by_ref.items():
            chain, score = _best_chain(query_positions[rows], self._positions[entry[rows]], weights[rows])
            if score < min_score:
                continue
            rows_in_chain = [rows[i] for i in chain]
            first, last = rows_in_chain[0], rows_in_chain[-1]
            q_first, q_last = int(query_positions[first]), int(query_positions[last]) + SHINGLE_WORDS - 1
            found.append(
                QuoteMatch(
                    ref_id=self._ids[ref],
                    score=round(score, 3),
                    confidence=confidence(score),
                    query_start=int(tokens.starts[q_first]),
                    query_end=int(tokens.ends[q_last]),
                    ref_start=int(self._char_starts[entry[first]]),
                    ref_end=int(self._char_ends[entry[last]]),
                    matched_shingles=len(chain),
                    query_words=q_last - q_first + 1,
                )
            )
        found.sort(key=lambda m: -m.score)
        return found[:limit]


def _best_chain(
    query_pos: npt.NDArray[np.int64], ref_pos: npt.NDArray[np.int32], weights: npt.NDArray[np.float64]
) -> tuple[list[int], float]:
    """The heaviest run of hits moving forward on both sides along one diagonal (within MAX_DRIFT words
    per step, at most MAX_GAP query words apart), by dynamic programming over the hits in query order."""
    order = np.lexsort((ref_pos, query_pos))[:400]
    q = query_pos[order].tolist()
    r = ref_pos[order].tolist()
    w = weights[order].tolist()
    best = list(w)
    back = [-1] * len(q)
    for j in range(len(q)):
        for i in range(j - 1, -1, -1):
            if q[j] - q[i] > MAX_GAP:
                break
            aligned = q[i] < q[j] and r[i] < r[j] and abs((r[j] - q[j]) - (r[i] - q[i])) <= MAX_DRIFT
            if aligned and best[i] + w[j] > best[j]:
                best[j], back[j] = best[i] + w[j], i
    end = int(np.argmax(best))
    chain = []
    while end != -1:
        chain.append(int(order[end]))
        end = back[end]
    chain.reverse()
    return chain, float(max(best))
