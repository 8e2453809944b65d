"""Reads of stored fingerprints for the apps above (the catalog, the dashboard), keyed by content hash."""

from __future__ import annotations

from collections.abc import Iterable

from matching import index
from matching.models import Fingerprint, FingerprintKind
from media.text.embedding import PassageEmbeddings


def passage_embeddings_of(*, sha256s: Iterable[str]) -> dict[str, PassageEmbeddings]:
    """The stored passages (spans, token counts, vectors) of each text content that has them under the
    current algorithm; content not fingerprinted yet is absent."""
    rows = Fingerprint.objects.filter(
        sha256__in=list(sha256s),
        kind=FingerprintKind.PASSAGES,
        algorithm=index.CURRENT[FingerprintKind.PASSAGES],
    ).values_list("sha256", "data")
    return {sha256: PassageEmbeddings.from_bytes(bytes(data)) for sha256, data in rows}


def text_token_counts(*, sha256s: Iterable[str]) -> dict[str, int]:
    """Tokens of each text content (the sum over its passages, counted by the retrieval tokenizer when
    the content was fingerprinted); content not fingerprinted yet is absent."""
    return {
        sha256: int(passages.tokens.sum())
        for sha256, passages in passage_embeddings_of(sha256s=sha256s).items()
    }
