"""Licence fees are charged where licences are granted: every way to a grant (the API, the dashboard's
form, the studio) pays the fee in the transaction that activates the grant, once, and settlement then
credits the work's owners. A fee that cannot be paid leaves no active grant and changes nothing."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from catalog.models import Grant, GrantStatus, Offer
from catalog.services import ParentClaim, derivative_create, grant_create
from common.money import Money
from common.problems import ApiError
from royalties import selectors
from royalties.funding import prepaid_fund
from royalties.ledger import InsufficientFunds
from royalties.licences import licence_accept
from royalties.models import LedgerAccount, RevenueItem
from royalties.settlement import revenue_settle
from studio import services as studio
from tests import factories
from tests.royalties.builders import co_own, organisation_of, payable

pytestmark = pytest.mark.django_db

FEE = 1_999  # 19.99 USD: the platform keeps 10% (200), the owners share 1,799


def _fee_offer(**terms: object) -> Offer:
    creator = factories.creator(username="sol")
    return factories.offer(creator, factories.work(creator), licence_fee_minor=FEE, **terms)


def _funded_vendor(amount_minor: int):
    vendor = factories.vendor(username="acme")
    organisation = organisation_of(vendor)
    prepaid_fund(organisation=organisation, amount=Money(amount_minor, "USD"), external_ref="top-up-1")
    return vendor, organisation


def _available(organisation) -> int:
    return selectors.prepaid_available(organisation=organisation, currency="USD")


def _ledger_rows() -> tuple[int, int, list[tuple[str, int, int]]]:
    return (
        Grant.objects.count(),
        RevenueItem.objects.count(),
        list(LedgerAccount.objects.order_by("key").values_list("key", "balance_minor", "held_minor")),
    )


def _owner_of(offer: Offer):
    return offer.work.created_by


def test_a_grant_made_through_the_api_charges_its_fee_once_and_settlement_pays_the_owner(as_user):
    # given a vendor with 50.00 and terms with a 19.99 licence fee
    offer = _fee_offer()
    vendor, organisation = _funded_vendor(5_000)

    # when it accepts the terms, then clicks again
    first = as_user(vendor).post("/api/v1/grants", {"offer": offer.pk}, format="json")
    again = as_user(vendor).post("/api/v1/grants", {"offer": offer.pk}, format="json")

    # then the grant is active and the fee was held once on its balance
    assert (first.status_code, first.json()["status"], first.json()["fee_minor"]) == (201, "active", FEE)
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    assert list(RevenueItem.objects.values_list("source_key", "source", "amount_minor")) == [
        (f"licence:{first.json()['id']}", "licence_fee", FEE)
    ]
    assert _available(organisation) == 5_000 - FEE

    # and settlement moves it to the owner (less the platform's 10%), once
    assert revenue_settle().items == 1
    assert revenue_settle().items == 0
    assert payable(_owner_of(offer)) == FEE - 200
    assert LedgerAccount.objects.get(key="platform_fee:USD").balance_minor == 200
    assert _available(organisation) == 5_000 - FEE


def test_a_grant_whose_fee_the_balance_cannot_pay_is_refused_and_changes_nothing(as_user):
    offer = _fee_offer()
    vendor, organisation = _funded_vendor(FEE - 1)
    before = _ledger_rows()

    response = as_user(vendor).post("/api/v1/grants", {"offer": offer.pk}, format="json")

    assert (response.status_code, response.json()["code"]) == (402, "insufficient_funds")
    assert _ledger_rows() == before
    assert Grant.objects.count() == 0
    assert _available(organisation) == FEE - 1


def test_a_person_with_no_balance_gets_no_grant_on_terms_with_a_fee(as_user):
    offer = _fee_offer()
    fan = factories.fan()
    before = _ledger_rows()

    response = as_user(fan).post("/api/v1/grants", {"offer": offer.pk}, format="json")

    assert (response.status_code, response.json()["code"]) == (402, "licence_fee_unpaid")
    assert _ledger_rows() == before


def test_the_dashboard_form_charges_the_fee_once_however_often_it_is_posted(client):
    # given a fan whose studio wallet holds 30.00
    offer = _fee_offer()
    fan = factories.fan(username="kai")
    wallet = studio.wallet_fund(user=fan, amount=Money(3_000, "USD"), external_ref="card-1")
    client.force_login(fan)

    # when the fan presses "accept" twice
    for _ in range(2):
        response = client.post(f"/dashboard/offers/{offer.pk}/accept/")
        assert response.status_code == 302

    # then one active grant, held by the wallet that paid, and one fee
    grant = Grant.objects.get()
    assert (grant.status, grant.organisation_id) == (GrantStatus.ACTIVE, wallet.organisation_id)
    assert RevenueItem.objects.filter(source_key=f"licence:{grant.pk}").count() == 1
    assert _available(wallet.organisation) == 3_000 - FEE
    revenue_settle()
    assert payable(_owner_of(offer)) == FEE - 200


def test_the_dashboard_form_shows_why_a_short_wallet_gets_no_licence(client):
    offer = _fee_offer()
    fan = factories.fan(username="kai")
    wallet = studio.wallet_fund(user=fan, amount=Money(FEE - 1, "USD"), external_ref="card-1")
    client.force_login(fan)
    before = _ledger_rows()

    response = client.post(f"/dashboard/offers/{offer.pk}/accept/", follow=True)

    assert "top it up" in response.content.decode()
    assert _ledger_rows() == before
    assert _available(wallet.organisation) == FEE - 1


def test_the_studio_charges_the_fee_from_the_wallet_once(as_user):
    offer = _fee_offer(uses={"derivative": 0, "style": 10})
    fan = factories.fan(username="kai")
    wallet = studio.wallet_fund(user=fan, amount=Money(3_000, "USD"), external_ref="card-1")

    first = studio.terms_accept(user=fan, offer=offer)
    replay = studio.terms_accept(user=fan, offer=offer)

    assert (first.created, first.fee_charged_minor, first.grant.status) == (True, FEE, GrantStatus.ACTIVE)
    assert (replay.created, replay.fee_charged_minor, replay.grant.pk) == (False, 0, first.grant.pk)
    assert RevenueItem.objects.filter(source="licence_fee").count() == 1
    assert _available(wallet.organisation) == 3_000 - FEE
    revenue_settle()
    assert payable(_owner_of(offer)) == FEE - 200


def test_the_studio_refuses_a_short_wallet_and_leaves_no_grant():
    offer = _fee_offer(uses={"derivative": 0})
    fan = factories.fan(username="kai")
    studio.wallet_fund(user=fan, amount=Money(100, "USD"), external_ref="card-1")
    before = _ledger_rows()

    with pytest.raises(InsufficientFunds):
        studio.terms_accept(user=fan, offer=offer)

    assert _ledger_rows() == before


def test_an_approved_grant_is_not_active_until_its_fee_is_paid_and_then_is_charged_once(as_user):
    # given terms whose derivatives need the owner's approval, and a fan with a funded wallet
    offer = _fee_offer(derivative_approval_required=True)
    owner = _owner_of(offer)
    fan = factories.fan(username="kai")
    wallet = studio.wallet_fund(user=fan, amount=Money(3_000, "USD"), external_ref="card-1")
    requested = as_user(fan).post("/api/v1/grants", {"offer": offer.pk}, format="json").json()
    assert requested["status"] == "pending_approval" and not RevenueItem.objects.exists()

    # when the owner approves, the grant waits for its fee: it licenses nothing yet
    approved = as_user(owner).post(f"/api/v1/grants/{requested['id']}/approve").json()
    assert approved["status"] == "pending_payment"
    with pytest.raises(ApiError) as refused:
        derivative_create(
            user=fan, title="Remix", kind="image", parents=[ParentClaim(offer.work_id, requested["id"])]
        )
    assert refused.value.problem_code == "grant_not_active"
    assert not RevenueItem.objects.exists() and _available(wallet.organisation) == 3_000

    # then accepting again pays it, once
    paid = as_user(fan).post("/api/v1/grants", {"offer": offer.pk}, format="json")
    again = as_user(fan).post("/api/v1/grants", {"offer": offer.pk}, format="json")
    assert (paid.json()["id"], paid.json()["status"]) == (requested["id"], "active")
    assert again.json()["status"] == "active"
    assert RevenueItem.objects.filter(source="licence_fee").count() == 1
    assert _available(wallet.organisation) == 3_000 - FEE


def test_the_catalog_alone_never_makes_an_active_grant_with_an_unpaid_fee():
    offer = _fee_offer()
    vendor, _ = _funded_vendor(5_000)

    grant = grant_create(offer=offer, user=vendor).grant

    assert grant.status == GrantStatus.PENDING_PAYMENT
    assert not RevenueItem.objects.exists()


def test_co_owners_share_the_fee_by_their_split_sheet():
    creator, co_owner = factories.creator(username="sol"), factories.creator(username="ade")
    work = factories.work(creator)
    co_own(work, creator, [(creator, 7_000), (co_owner, 3_000)])
    offer = factories.offer(creator, work, licence_fee_minor=FEE)
    vendor, _ = _funded_vendor(5_000)

    licence_accept(offer=offer, user=vendor)
    revenue_settle()

    assert (payable(creator), payable(co_owner)) == (
        1_259,
        540,
    )  # 1,259.3 and 539.7: the odd unit to the larger remainder


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_accepts_charge_the_fee_once():
    # given a vendor with enough for two fees, accepting the same terms from two threads at once
    offer = _fee_offer()
    vendor, organisation = _funded_vendor(2 * FEE)
    start = threading.Barrier(2)
    results: list[object] = []

    def accept() -> None:
        try:
            start.wait()
            results.append(licence_accept(offer=offer, user=vendor).fee_charged_minor)
        except Exception as error:  # reported through the assertion below
            results.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then whichever came first paid, and the other found the grant paid
    assert sorted(results) == [0, FEE]  # type: ignore[type-var]
    assert Grant.objects.filter(status=GrantStatus.ACTIVE).count() == 1
    assert RevenueItem.objects.count() == 1
    assert _available(organisation) == FEE


def test_the_dashboard_offers_to_pay_an_approved_grant_and_paying_activates_it(client, as_user):
    offer = _fee_offer(derivative_approval_required=True)
    fan = factories.fan(username="kai")
    wallet = studio.wallet_fund(user=fan, amount=Money(3_000, "USD"), external_ref="card-1")
    client.force_login(fan)
    client.post(f"/dashboard/offers/{offer.pk}/accept/")
    grant = Grant.objects.get()
    as_user(_owner_of(offer)).post(f"/api/v1/grants/{grant.pk}/approve")

    page = client.get(f"/dashboard/offers/{offer.pk}/").content.decode()
    client.post(f"/dashboard/offers/{offer.pk}/accept/")

    assert "Pay the licence fee of 19.99 USD" in page
    grant.refresh_from_db()
    assert (grant.status, grant.organisation_id) == (GrantStatus.ACTIVE, wallet.organisation_id)
    assert _available(wallet.organisation) == 3_000 - FEE
