"""The per-process index loads a fingerprint that commits after one with a higher id (PostgreSQL hands out
ids at insert, not at commit), and gives up an id that never appears."""

from __future__ import annotations

import hashlib

import pytest

from matching import index
from matching.models import Fingerprint, FingerprintKind
from media.text import quotes
from tests.interleave import paused_inside_transaction

ARTICLE = (
    "The harbour master counted the boats at dusk and found the blue trawler missing from its mooring. "
    "By midnight the lifeboat crew had found it drifting without power beyond the northern lighthouse, "
    "its two young deckhands cold but unhurt, and towed it home before the tide turned against them."
)
LETTER = (
    "Dear neighbours, the allotment committee will meet on Thursday evening in the church hall to decide "
    "how the new water butts are shared, who keeps the shed key over winter, and when the compost is turned."
)


def _store(text: str) -> Fingerprint:
    return Fingerprint.objects.create(
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        kind=FingerprintKind.TEXT,
        algorithm=quotes.ALGORITHM,
        data=quotes.compute(text).to_bytes(),
    )


def _found(text: str) -> bool:
    sha256 = hashlib.sha256(text.encode()).hexdigest()
    return any(match.ref_id == sha256 for match in index.current().text.query(text, limit=5))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_fingerprint_committed_after_a_higher_id_is_still_loaded() -> None:
    index.reset()
    try:
        # given a fingerprint inserted (id n) in a transaction that has not committed
        late, commit = paused_inside_transaction(lambda: _store(ARTICLE).pk)
        # and one inserted after it (id n + 1) and committed, which this process loads
        early = _store(LETTER)
        assert _found(LETTER) and not _found(ARTICLE)
        assert index.current().loaded_up_to == early.pk

        # when the first commits
        commit.set()
        late.join()
        assert late.error is None and late.result < early.pk

        # then the next look loads it, and stops looking for it
        assert _found(ARTICLE)
        assert late.result not in index.current().waiting
    finally:
        index.reset()


@pytest.mark.django_db
def test_an_id_that_never_commits_is_looked_for_until_the_wait_ends() -> None:
    stored = _store(LETTER)
    indexes = index.Indexes(loaded_up_to=stored.pk + 5, waiting={stored.pk + 2: 0.0})

    index.refresh(indexes, now=index.GAP_WAIT_S - 1)
    assert indexes.waiting == {stored.pk + 2: 0.0}

    index.refresh(indexes, now=index.GAP_WAIT_S + 1)
    assert indexes.waiting == {}
