"""Releases: a price for downloads, purchases from the buyer's wallet, and the sale split up the chain
exactly: 50/50 between the fan and the artist after the platform's fee."""

from __future__ import annotations

import pytest

from catalog.services import ParentClaim, asset_upload, derivative_create, grant_create
from common.money import Money, allocate
from common.problems import Conflict
from royalties.models import LedgerAccount, RevenueItem, RevenueSource
from royalties.selectors import fee_key, payable_key
from royalties.settlement import revenue_settle
from studio import selectors
from studio.models import Purchase
from studio.services import release_purchase, release_set, release_withdraw, wallet_fund
from tests import factories
from tests.interleave import Session, paused_inside_transaction, wait_until_blocked_or_done
from tests.studio.http import close


def downloaded(client, url: str) -> int:
    response = client.get(url)
    close(response)
    return response.status_code


def payable(user) -> int:
    account = LedgerAccount.objects.filter(key=payable_key(user.pk, "USD")).first()
    return account.balance_minor if account else 0


@pytest.fixture
def derivative(db, photos):
    artist = factories.creator(username="sol", display_name="Sol")
    fan = factories.fan(username="kai")
    song = factories.work(artist, kind="image", title="Garden")
    asset_upload(work=song, user=artist, data=photos["Garden"], filename="garden.jpg")
    offer = factories.offer(
        artist, song, uses={"derivative": 0}, derivative_share_bps=5000, commercial_use=True
    )
    grant = grant_create(offer=offer, user=fan).grant
    work = derivative_create(
        user=fan, title="Kai's garden", kind="image", parents=[ParentClaim(song.pk, grant.pk)]
    )
    asset_upload(work=work, user=fan, data=photos["Aqua"], filename="kai.jpg")
    return artist, fan, work


def test_a_sale_is_split_fifty_fifty_with_the_artist_after_the_platform_fee(derivative, as_user, settings):
    artist, fan, work = derivative
    buyer = factories.fan(username="ada")
    wallet_fund(user=buyer, amount=Money(2_000, "USD"), external_ref="ada-1")
    created = as_user(fan).post(
        "/api/v1/releases", {"work": work.pk, "price_minor": 999, "currency": "USD"}, format="json"
    )
    assert created.status_code == 201, created.content
    release_id = created.json()["id"]

    bought = as_user(buyer).post(f"/api/v1/releases/{release_id}/purchase")
    again = as_user(buyer).post(f"/api/v1/releases/{release_id}/purchase")

    assert (bought.status_code, again.status_code) == (201, 200)
    assert bought.json()["id"] == again.json()["id"]
    sale = RevenueItem.objects.get(source=RevenueSource.SALE)
    assert (sale.work_id, sale.amount_minor, sale.source_key) == (
        work.pk,
        999,
        f"sale:purchase:{bought.json()['id']}",
    )
    assert selectors.wallet_available(user=buyer, currency="USD") == 2_000 - 999

    revenue_settle()

    fee, rest = allocate(999, [settings.PLATFORM_FEE_BPS, 10_000 - settings.PLATFORM_FEE_BPS])
    assert (fee, rest) == (100, 899)  # 10% of 9.99 is 99.9 cents: the fee takes the odd unit
    assert payable(fan) + payable(artist) == rest
    assert sorted([payable(fan), payable(artist)]) == [449, 450]  # 50/50, each within a unit
    assert LedgerAccount.objects.get(key=fee_key("USD")).balance_minor == fee
    assert selectors.wallet_available(user=buyer, currency="USD") == 2_000 - 999


def test_an_even_price_splits_exactly_in_half(derivative):
    artist, fan, work = derivative
    buyer = factories.fan(username="ada")
    wallet_fund(user=buyer, amount=Money(1_000, "USD"), external_ref="ada-1")
    release = release_set(user=fan, work=work, price_minor=1_000, currency="USD")
    release_purchase(buyer=buyer, release=release)
    revenue_settle()
    assert (payable(fan), payable(artist)) == (450, 450)


def test_a_buyer_who_cannot_pay_gets_402_and_nothing_changes(derivative, as_user):
    _, fan, work = derivative
    buyer = factories.fan(username="ada")
    wallet_fund(user=buyer, amount=Money(100, "USD"), external_ref="ada-1")
    release = release_set(user=fan, work=work, price_minor=500, currency="USD")

    response = as_user(buyer).post(f"/api/v1/releases/{release.pk}/purchase")

    assert response.status_code == 402 and response.json()["code"] == "insufficient_funds"
    assert (
        not Purchase.objects.exists() and not RevenueItem.objects.filter(source=RevenueSource.SALE).exists()
    )
    assert selectors.wallet_available(user=buyer, currency="USD") == 100


def test_downloads_are_for_the_owner_and_buyers_only(derivative, as_user):
    _, fan, work = derivative
    buyer = factories.fan(username="ada")
    wallet_fund(user=buyer, amount=Money(1_000, "USD"), external_ref="ada-1")
    release = release_set(user=fan, work=work, price_minor=300, currency="USD")
    url = f"/api/v1/releases/{release.pk}/download"

    assert as_user(buyer).get(url).status_code == 402
    assert downloaded(as_user(fan), url) == 200
    as_user(buyer).post(f"/api/v1/releases/{release.pk}/purchase")
    assert downloaded(as_user(buyer), url) == 200
    assert as_user(fan).post(f"/api/v1/releases/{release.pk}/purchase").json()["code"] == "own_release"


def test_a_non_commercial_parent_allows_only_a_free_release(db, photos, as_user):
    artist = factories.creator(username="sol")
    fan = factories.fan(username="kai")
    original = factories.work(artist, kind="image")
    offer = factories.offer(artist, original, uses={"derivative": 0}, commercial_use=False)
    grant = grant_create(offer=offer, user=fan).grant
    work = derivative_create(
        user=fan, title="Mine", kind="image", parents=[ParentClaim(original.pk, grant.pk)]
    )
    asset_upload(work=work, user=fan, data=photos["Aqua"], filename="kai.jpg")

    priced = as_user(fan).post(
        "/api/v1/releases", {"work": work.pk, "price_minor": 100, "currency": "USD"}, format="json"
    )
    free = as_user(fan).post(
        "/api/v1/releases", {"work": work.pk, "price_minor": 0, "currency": "USD"}, format="json"
    )

    assert priced.status_code == 403 and priced.json()["term"] == "commercial_use"
    assert free.status_code == 201 and free.json()["price_minor"] == 0


def test_someone_elses_work_cannot_be_released(derivative, as_user):
    artist, _, work = derivative
    response = as_user(artist).post(
        "/api/v1/releases", {"work": work.pk, "price_minor": 100, "currency": "USD"}, format="json"
    )
    assert response.status_code == 404


def test_a_buyer_who_saw_an_older_price_is_refused_and_charged_nothing(derivative, as_user):
    # given a release the buyer saw at 5.00, repriced to 9.00 by its maker since
    _, fan, work = derivative
    buyer = factories.fan(username="ada")
    wallet_fund(user=buyer, amount=Money(1_000, "USD"), external_ref="ada-1")
    release = release_set(user=fan, work=work, price_minor=500, currency="USD")
    release_set(user=fan, work=work, price_minor=900, currency="USD")

    # when the buyer confirms the price they saw
    stale = as_user(buyer).post(
        f"/api/v1/releases/{release.pk}/purchase", {"price_minor": 500}, format="json"
    )

    # then nothing is bought or charged, and the new price is named
    assert (stale.status_code, stale.json()["code"], stale.json()["price_minor"]) == (
        409,
        "release_price_changed",
        900,
    )
    assert not Purchase.objects.exists()
    assert selectors.wallet_available(user=buyer, currency="USD") == 1_000
    current = as_user(buyer).post(
        f"/api/v1/releases/{release.pk}/purchase", {"price_minor": 900}, format="json"
    )
    assert (current.status_code, current.json()["amount_minor"]) == (201, 900)
    assert selectors.wallet_available(user=buyer, currency="USD") == 100


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_release_withdrawn_while_it_is_being_bought_is_not_sold(derivative):
    _, fan, work = derivative
    buyer = factories.fan(username="ada")
    wallet_fund(user=buyer, amount=Money(1_000, "USD"), external_ref="ada-1")
    release = release_set(user=fan, work=work, price_minor=500, currency="USD")

    # when the maker withdraws it (not yet committed) while the buyer's purchase comes in
    withdrawal, commit = paused_inside_transaction(lambda: release_withdraw(user=fan, release=release))
    purchase = Session(lambda: release_purchase(buyer=buyer, release=release))
    purchase.start()
    purchase_waited = wait_until_blocked_or_done(purchase)
    commit.set()
    withdrawal.join()
    purchase.join()

    # then the purchase waited for the withdrawal and was refused: nothing sold, nothing charged
    assert purchase_waited and withdrawal.error is None
    assert isinstance(purchase.error, Conflict) and purchase.error.problem_code == "release_not_on_sale"
    assert not Purchase.objects.exists()
    assert not RevenueItem.objects.filter(source=RevenueSource.SALE).exists()
    assert selectors.wallet_available(user=buyer, currency="USD") == 1_000


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_release_repriced_while_it_is_being_bought_is_sold_at_the_price_that_stands(derivative):
    _, fan, work = derivative
    buyer = factories.fan(username="ada")
    wallet_fund(user=buyer, amount=Money(1_000, "USD"), external_ref="ada-1")
    release = release_set(user=fan, work=work, price_minor=500, currency="USD")

    repricing, commit = paused_inside_transaction(
        lambda: release_set(user=fan, work=work, price_minor=900, currency="USD")
    )
    purchase = Session(lambda: release_purchase(buyer=buyer, release=release))
    purchase.start()
    purchase_waited = wait_until_blocked_or_done(purchase)
    commit.set()
    repricing.join()
    purchase.join()

    assert purchase_waited and repricing.error is None and purchase.error is None
    assert (purchase.result.purchase.amount_minor, purchase.result.created) == (900, True)
    assert RevenueItem.objects.get(source=RevenueSource.SALE).amount_minor == 900
    assert selectors.wallet_available(user=buyer, currency="USD") == 100
