"""The claim page offers the appeal to the party a resolution went against, once."""

from __future__ import annotations

import pytest
from django.test import Client

from catalog import tracing
from catalog.models import Claim, ClaimStatus
from catalog.services import asset_upload
from tests import factories

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_loser_of_a_resolution_appeals_it_from_the_claim_page_and_only_once() -> None:
    painter, copier, operator = factories.creator(), factories.creator(), factories.creator()
    operator.is_staff = True
    operator.save(update_fields=["is_staff"])
    original, copy = factories.work(painter, title="Original"), factories.work(copier, title="Copy")
    asset = asset_upload(work=copy, user=copier, data=factories.png_bytes(), filename="c.png").asset
    claim = Claim.objects.create(
        work=original,
        respondent=copier,
        subject_asset=asset,
        subject_sha256=asset.blob_id,
        match_kind="image",
        score=50,
        confidence=0.99,
    )
    tracing.claim_decide(claim=claim, user=painter, decision="track")
    tracing.claim_dispute(claim=claim, user=copier, statement="Mine.")
    tracing.claim_resolve(claim=claim, operator=operator, resolution="upheld")
    url = f"/dashboard/claims/{claim.pk}/"

    winner_page = _client(painter).get(url).content.decode()
    loser_page = _client(copier).get(url).content.decode()
    appealed = _client(copier).post(
        f"{url}appeal/", {"statement": "The photograph is mine: here is the raw file."}
    )
    again = _client(copier).post(f"{url}appeal/", {"statement": "Once more."})

    assert "Appeal the resolution" not in winner_page and "Appeal the resolution" in loser_page
    assert appealed.status_code == 302
    claim.refresh_from_db()
    assert (claim.status, claim.appealed) == (ClaimStatus.DISPUTED, True)
    assert again.status_code == 400 and "resolved claim is appealed" in again.content.decode()
