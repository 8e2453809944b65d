"""A claim is reviewed like YouTube Studio's: both files side by side with the matched region drawn on the
registered image, the match in words and as a percentage, three labelled decisions, a confirmation step
before a block, and one decision applied to several claims, each checked on its own."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from catalog import tracing
from catalog.models import Asset, Claim, ClaimEvent, Work
from catalog.services import asset_upload
from common.money import Money
from royalties.funding import prepaid_fund
from tests import factories

pytestmark = pytest.mark.django_db


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(response) -> str:
    return response.content.decode()


def make_claim(owner: User, copier: User, *, title: str, color: tuple[int, int, int], **fields) -> Claim:
    work = factories.work(owner, title=title)
    original = asset_upload(
        work=work, user=owner, data=factories.png_bytes(color=color), filename=f"{title}.png"
    ).asset
    copy = factories.work(copier, title=f"Copy of {title}")
    copied = asset_upload(
        work=copy, user=copier, data=factories.png_bytes((60, 40), color=color), filename="copy.png"
    ).asset
    values = {
        "match_kind": "image",
        "score": 197.0,
        "confidence": 0.973,
        "evidence": {"region": [0.25, 0.1, 0.5, 0.6], "mirrored": True},
    }
    values.update(fields)
    return Claim.objects.create(
        work=work,
        respondent=copier,
        subject_asset=copied,
        subject_sha256=copied.blob_id,
        matched_asset=original,
        **values,
    )


@pytest.fixture
def parties():
    owner = factories.creator(username="mira", display_name="Mira")
    copier = factories.creator(username="copycat", display_name="Copy Cat")
    return owner, copier


def test_the_claim_page_shows_both_files_the_region_the_match_in_words_and_three_decisions(parties):
    owner, copier = parties
    claim = make_claim(owner, copier, title="Garden", color=(10, 120, 40))

    body = page(client_for(owner).get(f"/dashboard/claims/{claim.pk}/"))

    assert f"/dashboard/assets/{claim.matched_asset_id}/file/" in body
    assert f"/dashboard/claims/{claim.pk}/subject/" in body
    assert 'data-region="25.0,10.0,50.0,60.0"' in body
    assert '<rect x="25.0" y="10.0" width="50.0" height="60.0"/>' in body
    assert "Image match: the upload shows a picture found in the registered image" in body
    assert "Confidence 97%" in body
    assert "mirror image" in body
    assert "score" not in body.lower() and "197" not in body
    for label in ("Monetize", "Track", "Block…"):
        assert f">{label}<span" in body
    assert "<select" not in body.split("Your decision")[1].split("</form>")[0]


def test_the_matched_upload_is_served_to_both_parties_as_a_preview_and_to_nobody_else(parties):
    owner, copier = parties
    claim = make_claim(owner, copier, title="Garden", color=(10, 120, 40))
    url = f"/dashboard/claims/{claim.pk}/subject/"

    shown = client_for(owner).get(url)
    assert shown.status_code == 200 and shown["Content-Type"] == "image/jpeg"
    original = claim.subject_asset.blob
    preview = shown.getvalue()
    assert preview != open_blob(original)  # a preview, never the original
    respondent = client_for(copier).get(url)
    assert respondent.status_code == 200 and respondent.getvalue() == preview
    assert client_for(factories.creator(username="stranger")).get(url).status_code == 404
    assert Client().get(url).status_code == 302  # to the log-in page


def open_blob(blob) -> bytes:
    from django.core.files.storage import default_storage

    with default_storage.open(blob.storage_name, "rb") as handle:
        return handle.read()


def test_block_needs_a_confirmation_and_changes_nothing_until_it_is_given(parties):
    owner, copier = parties
    claim = make_claim(owner, copier, title="Garden", color=(10, 120, 40))
    client = client_for(owner)

    asked = client.post(f"/dashboard/claims/{claim.pk}/decide/", {"decision": "block"})

    assert asked.status_code == 200
    assert 'name="confirm" value="block"' in page(asked) and "Yes, block" in page(asked)
    claim.refresh_from_db()
    subject_work = Work.objects.get(pk=claim.subject_asset.work_id)
    assert (claim.status, claim.decision, subject_work.status) == ("open", "", "draft")
    assert not ClaimEvent.objects.filter(claim=claim, kind="decided").exists()

    done = client.post(f"/dashboard/claims/{claim.pk}/decide/", {"decision": "block", "confirm": "block"})

    assert done.status_code == 302
    claim.refresh_from_db()
    subject_work.refresh_from_db()
    assert (claim.status, claim.decision, subject_work.status) == ("decided", "block", "blocked")


def test_monetize_and_track_are_one_click_and_the_respondent_cannot_decide(parties):
    owner, copier = parties
    claim = make_claim(owner, copier, title="Garden", color=(10, 120, 40))

    refused = client_for(copier).post(
        f"/dashboard/claims/{claim.pk}/decide/", {"decision": "block", "confirm": "block"}
    )
    assert refused.status_code == 400
    claim.refresh_from_db()
    assert claim.decision == ""

    client_for(owner).post(f"/dashboard/claims/{claim.pk}/decide/", {"decision": "track"})
    claim.refresh_from_db()
    assert (claim.status, claim.decision) == ("decided", "track")


def test_bulk_decision_applies_to_each_claim_the_user_may_decide_and_refuses_the_others(parties):
    owner, copier = parties
    first = make_claim(owner, copier, title="Garden", color=(10, 120, 40))
    second = make_claim(owner, copier, title="Harbour", color=(200, 30, 90))
    others = make_claim(factories.creator(username="other"), copier, title="Field", color=(90, 90, 200))
    client = client_for(owner)
    listing = page(client.get("/dashboard/claims/"))
    assert f'name="claim" value="{first.pk}"' in listing and "Apply to selected" in listing

    response = client.post(
        "/dashboard/claims/bulk/",
        {"decision": "monetize", "claim": [first.pk, second.pk, others.pk]},
        follow=True,
    )

    assert [(c.pk, c.decision) for c in Claim.objects.order_by("pk")] == [
        (first.pk, "monetize"),
        (second.pk, "monetize"),
        (others.pk, ""),
    ]
    body = page(response)
    assert "2 claims decided" in body and f"#{others.pk}: no such claim of yours" in body


def test_bulk_block_asks_first_and_lists_only_the_users_own_claims(parties):
    owner, copier = parties
    first = make_claim(owner, copier, title="Garden", color=(10, 120, 40))
    others = make_claim(factories.creator(username="other"), copier, title="Field", color=(90, 90, 200))
    client = client_for(owner)

    asked = client.post("/dashboard/claims/bulk/", {"decision": "block", "claim": [first.pk, others.pk]})

    body = page(asked)
    assert asked.status_code == 200 and "Yes, block" in body
    assert f'name="claim" value="{first.pk}"' in body and f'value="{others.pk}"' not in body
    assert set(Claim.objects.values_list("decision", flat=True)) == {""}

    client.post("/dashboard/claims/bulk/", {"decision": "block", "claim": [first.pk], "confirm": "block"})
    first.refresh_from_db()
    assert first.decision == "block"


def test_bulk_refuses_an_unknown_decision_or_no_selection_and_changes_nothing(parties):
    owner, copier = parties
    claim = make_claim(owner, copier, title="Garden", color=(10, 120, 40))
    client = client_for(owner)

    wrong = client.post("/dashboard/claims/bulk/", {"decision": "delete", "claim": [claim.pk]}, follow=True)
    empty = client.post("/dashboard/claims/bulk/", {"decision": "track"}, follow=True)

    assert "Choose a decision" in page(wrong) and "Select at least one claim" in page(empty)
    claim.refresh_from_db()
    assert claim.decision == "" and Asset.objects.count() == 2


def test_a_price_for_a_vendors_output_is_asked_in_money_and_charged_in_minor_units() -> None:
    painter, vendor = factories.creator(username="painter"), factories.vendor(username="acme")
    organisation = vendor.organisations.get()
    work = factories.work(painter, title="Garden")
    factories.offer(painter, work, uses={"ai-train": 5})  # the output's use (generation) is not priced
    output = tracing.output_register(
        organisation=organisation,
        user=vendor,
        data=factories.png_bytes(color=(10, 200, 40)),
        filename="generated.png",
        receipts={},
    ).output
    claim = Claim.objects.create(
        work=work,
        respondent=vendor,
        subject_output=output,
        subject_sha256=output.blob_id,
        match_kind="image",
        score=40,
        confidence=0.99,
    )
    prepaid_fund(organisation=organisation, amount=Money(1_000, "USD"), external_ref="t-1", rail="manual")
    client = client_for(painter)
    url = f"/dashboard/claims/{claim.pk}/decide/"
    assert 'name="price" id="id_price"' in page(client.get(f"/dashboard/claims/{claim.pk}/"))

    wrong = client.post(url, {"decision": "monetize", "price": "4.505"})
    claim.refresh_from_db()
    assert wrong.status_code == 400 and claim.decision == ""

    client.post(url, {"decision": "monetize", "price": "4.50"})
    claim.refresh_from_db()
    assert (claim.decision, claim.charge_minor) == ("monetize", 450)
    body = page(client.get(f"/dashboard/claims/{claim.pk}/"))
    assert "4.50 USD" in body and "minor units" not in body
