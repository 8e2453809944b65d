"""Consent enforced: a do-not-train work refuses ai-train at every entry point; a withdrawn consent stops the
next access and is published at once; paid licences keep it to the end of their term unless ended at
once; a revoked grant refuses the next access. Licensees get a notice each time."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from lxml import etree

from access.models import AccessEvent, X402Payment
from accounts.models import ApiKey
from catalog import consent
from catalog.models import ConsentWithdrawal, Grant, LicenseeNotice
from catalog.services import asset_upload
from common import clock
from common.money import Money
from datasets.models import TrainingOptOut
from royalties.funding import prepaid_fund
from royalties.licences import licence_accept
from royalties.selectors import prepaid_available
from tests import factories

pytestmark = pytest.mark.django_db

RSL = "{https://rslstandard.org/rsl}"


@pytest.fixture
def world(with_key):
    creator = factories.creator()
    work = factories.work(creator)
    original = factories.png_bytes(size=(90, 60), color=(30, 160, 30))
    asset_upload(work=work, user=creator, data=original, filename="o.png")
    vendor = factories.vendor()
    organisation = vendor.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(10_000, "USD"), external_ref=str(uuid.uuid4()))
    secret = factories.key(vendor, "access")
    return {
        "creator": creator,
        "work": work,
        "original": original,
        "vendor": vendor,
        "organisation": organisation,
        "secret": secret,
        "prefix": ApiKey.objects.get(user=vendor).prefix,
        "api": with_key(secret),
    }


def _access(world, use: str = "ai-train"):
    return world["api"].post(
        "/api/v1/access",
        {"work": world["work"].pk, "use": use, "territory": "US"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )


def _token(world, use: str):
    basic = base64.b64encode(f"{world['prefix']}:{world['secret']}".encode()).decode()
    return Client().post(
        "/rsl/token",
        {
            "grant_type": "rsl",
            "resource": f"http://127.0.0.1:8000/works/{world['work'].pk}/content",
            "scope": use,
        },
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )


def _published_refusals(world):
    """What a crawler reads about the work: the RSL prohibitions, GPTBot's robots group, Content-Usage."""
    document = etree.fromstring(Client().get("/licenses.xml").content)
    prohibits = document.find(f"{RSL}content/{RSL}license/{RSL}prohibits").text
    robots = Client().get("/robots.txt").content.decode()
    gptbot = robots.split("User-agent: GPTBot", 1)[1].split("\n\n", 1)[0]
    usage = Client().get(f"/works/{world['work'].pk}/content")["Content-Usage"]
    return prohibits, gptbot, usage


@pytest.mark.parametrize("flag_on", ["work", "creator"])
def test_a_do_not_train_work_refuses_ai_train_at_every_entry_point(world, flag_on) -> None:
    work, creator = world["work"], world["creator"]
    factories.offer(creator, work, uses={"ai-train": 40, "ai-generate": 25, "index": 0})
    if flag_on == "work":
        TrainingOptOut.objects.create(work=work, set_by=creator)
    else:
        TrainingOptOut.objects.create(user=creator, set_by=creator)
    balance = prepaid_available(organisation=world["organisation"], currency="USD")

    by_api = _access(world, "ai-train")
    by_url = Client().get(f"/works/{work.pk}/content?use=ai-train")
    by_token = _token(world, "ai-train")

    assert (by_api.status_code, by_api.json()["code"]) == (403, "do_not_train")
    assert (by_url.status_code, by_url.json()["code"]) == (403, "do_not_train")
    assert world["original"] not in by_url.content
    assert (by_token.status_code, by_token["Problem-Code"]) == (403, "do_not_train")
    assert "do-not-train" in by_url.json()["detail"]
    assert AccessEvent.objects.count() == 0 and X402Payment.objects.count() == 0
    assert not Grant.objects.filter(organisation=world["organisation"]).exists()
    assert prepaid_available(organisation=world["organisation"], currency="USD") == balance
    # The unpaid GET prices another use now, and the other uses are still sold.
    assert Client().get(f"/works/{work.pk}/content").json()["use"] == "ai-generate"
    assert _access(world, "ai-generate").status_code == 200
    # Published: RSL prohibits ai-train, the training crawlers may not fetch the work, aipref says n.
    prohibits, gptbot, usage = _published_refusals(world)
    assert "ai-train" in prohibits.split()
    assert f"Disallow: /works/{work.pk}/" in gptbot
    assert usage.startswith("train-ai=n")


def test_a_withdrawn_consent_stops_the_next_access_is_published_and_notifies_licensees(
    world, as_user
) -> None:
    work, creator = world["work"], world["creator"]
    factories.offer(creator, work, uses={"ai-generate": 25, "index": 0})
    assert _access(world, "ai-generate").status_code == 200
    grant = Grant.objects.get(organisation=world["organisation"])

    def user_agent_group() -> str:
        robots = Client().get("/robots.txt").content.decode()
        return robots.split("User-agent: ChatGPT-User", 1)[1].split("\n\n", 1)[0]

    assert f"Disallow: /works/{work.pk}/" not in user_agent_group()

    withdrawn = as_user(creator).post(
        f"/api/v1/works/{work.pk}/consent/withdraw",
        {"use": "ai-generate", "reason": "changed my mind"},
        format="json",
    )
    refused = _access(world, "ai-generate")

    assert withdrawn.status_code == 201 and withdrawn.json()["grants_end"] == "term_end"
    assert (refused.status_code, refused.json()["code"]) == (403, "consent_withdrawn")
    assert AccessEvent.objects.count() == 1
    assert f"Disallow: /works/{work.pk}/" in user_agent_group()
    document = etree.fromstring(Client().get("/licenses.xml").content)
    assert "ai-input" in document.find(f"{RSL}content/{RSL}license/{RSL}prohibits").text.split()
    [notice] = LicenseeNotice.objects.all()
    assert (notice.grant_id, notice.kind, notice.use_class) == (grant.pk, "consent_withdrawn", "ai-generate")
    assert notice.effective_at == ConsentWithdrawal.objects.get().created_at  # a free licence: at once
    notices = as_user(world["vendor"]).get("/api/v1/notices").json()
    assert [n["id"] for n in notices] == [notice.pk]
    # Restored: sold again.
    assert (
        as_user(creator)
        .post(f"/api/v1/works/{work.pk}/consent/restore", {"use": "ai-generate"}, format="json")
        .status_code
        == 200
    )
    assert _access(world, "ai-generate").status_code == 200


def test_a_paid_licence_keeps_a_withdrawn_use_to_its_term_end_unless_ended_at_once(world, as_user) -> None:
    work, creator = world["work"], world["creator"]
    expires = clock.now() + timedelta(days=30)
    offer = factories.offer(
        creator, work, uses={"ai-generate": 25}, licence_fee_minor=500, expires_at=expires
    )
    licence_accept(offer=offer, user=world["vendor"], organisation=world["organisation"])  # the fee is paid

    as_user(creator).post(f"/api/v1/works/{work.pk}/consent/withdraw", {"use": "ai-generate"}, format="json")
    kept = _access(world, "ai-generate")
    newcomer = consent.use_refusal(work_id=work.pk, use_class="ai-generate")  # no paid term of its own

    assert kept.status_code == 200  # paid for until the terms expire
    assert LicenseeNotice.objects.get().effective_at == expires
    assert newcomer is not None and newcomer.code == "consent_withdrawn"

    as_user(creator).post(f"/api/v1/works/{work.pk}/consent/restore", {"use": "ai-generate"}, format="json")
    as_user(creator).post(
        f"/api/v1/works/{work.pk}/consent/withdraw",
        {"use": "ai-generate", "grants_end": "now"},
        format="json",
    )
    ended = _access(world, "ai-generate")

    assert (ended.status_code, ended.json()["code"]) == (403, "consent_withdrawn")


def test_only_the_works_manager_may_withdraw_consent_and_nothing_changes_otherwise(world, as_user) -> None:
    work = world["work"]
    factories.offer(world["creator"], work, uses={"ai-generate": 25})

    response = as_user(factories.creator()).post(
        f"/api/v1/works/{work.pk}/consent/withdraw", {"use": "ai-generate"}, format="json"
    )

    assert response.status_code == 404
    assert ConsentWithdrawal.objects.count() == 0
    assert _access(world, "ai-generate").status_code == 200


def test_a_revoked_grant_refuses_the_next_access_and_tells_the_licensee(world, as_user) -> None:
    work, creator = world["work"], world["creator"]
    factories.offer(creator, work, uses={"ai-generate": 25})
    assert _access(world, "ai-generate").status_code == 200
    grant = Grant.objects.get(organisation=world["organisation"])

    revoked = as_user(creator).post(f"/api/v1/grants/{grant.pk}/revoke", {"reason": "abuse"}, format="json")
    refused = _access(world, "ai-generate")

    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert (refused.status_code, refused.json()["code"]) == (403, "licence_revoked")
    notice = LicenseeNotice.objects.get()
    assert (notice.kind, notice.grant_id) == ("grant_revoked", grant.pk) and "abuse" in notice.message
    assert as_user(factories.creator()).post(f"/api/v1/grants/{grant.pk}/revoke").status_code == 404
