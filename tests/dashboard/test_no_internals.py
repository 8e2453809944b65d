"""Nothing internal reaches a user: money in money (not cents), shares in percent (not bps), generator
details in words, no platform key to revoke, and a licensee named once."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from accounts.models import ApiKey, User
from catalog.models import Grant
from dashboard.generator_words import describe
from studio import selectors as studio_selectors
from studio import services as studio
from tests import factories

pytestmark = pytest.mark.django_db


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(response) -> str:
    return response.content.decode()


def test_the_platform_key_on_a_fans_wallet_is_neither_listed_nor_revocable() -> None:
    fan = factories.fan(username="sol")
    wallet = studio.wallet_get_or_create(user=fan)
    own = factories.key(fan, "read")
    client = client_for(fan)

    body = page(client.get("/dashboard/keys/"))
    refused = client.post(f"/dashboard/keys/{wallet.api_key_id}/revoke/")

    assert own.startswith("trb_")
    assert f"<code>{ApiKey.objects.get(user=fan, name='test').prefix}…</code>" in body
    assert wallet.api_key.prefix not in body and "platform use" not in body
    assert refused.status_code == 404
    assert ApiKey.objects.get(pk=wallet.api_key_id).revoked_at is None


def test_a_fans_licence_held_through_their_wallet_names_them_once() -> None:
    creator = factories.creator(username="mira")
    work = factories.work(creator, title="Harbour")
    offer = factories.offer(creator, work)
    fan = factories.fan(username="kai", display_name="Kai Lindqvist")
    studio.terms_accept(user=fan, offer=offer)
    assert Grant.objects.get(licensee=fan).organisation is not None

    body = page(client_for(creator).get(f"/dashboard/works/{work.pk}/"))

    assert "Kai Lindqvist" in body and "personal wallet" not in body


@override_settings(DEBUG=True, STUDIO_DEV_TOP_UP=True)
def test_the_development_top_up_takes_and_states_money_and_refuses_malformed_amounts() -> None:
    staff = factories.fan(username="op")
    User.objects.filter(pk=staff.pk).update(is_staff=True)
    client = client_for(User.objects.get(pk=staff.pk))
    form = page(client.get("/dashboard/create/"))
    assert "cents" not in form and 'name="amount"' in form

    done = client.post("/dashboard/create/wallet/top-up/", {"amount": "1,250.50"}, follow=True)
    assert "credited with 1,250.50 USD (development top-up)" in page(done)
    assert studio_selectors.wallet_available(user=staff, currency="USD") == 125_050

    for bad in ("abc", "-5", "0", "1.234", "NaN"):
        client.post("/dashboard/create/wallet/top-up/", {"amount": bad})
    assert studio_selectors.wallet_available(user=staff, currency="USD") == 125_050


def test_the_studio_lists_the_creators_share_in_percent() -> None:
    creator = factories.creator(username="mira")
    work = factories.work(creator, title="Harbour")
    factories.offer(creator, work, derivative_share_bps=2500)

    body = page(client_for(factories.fan()).get("/dashboard/create/"))

    assert "25%" in body and "bps" not in body


def test_generator_details_are_in_words() -> None:
    lines = dict(
        describe(
            {
                "time_stretch": 1.0417,
                "pitch_shift_semitones": -2,
                "instrumental_match_confidence": 0.9731,
                "palette_lab": [[1, 2, 3]] * 5,
                "vendor_url": "http://127.0.0.1:9/x",
                "new_measure": 3,
            }
        )
    )

    assert lines == {
        "Vocal tempo changed by": "4.2% faster",
        "Vocal pitch moved": "2 semitones down",
        "Confidence the instrumental is the licensed work": "97%",
        "Palette": "5 colours taken from the artwork",
        "New measure": "3",
    }
