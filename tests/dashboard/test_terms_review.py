"""The terms form: nothing allowed or priced until the creator chooses, a review of exactly what will be
published before the immutable version is, and contradictory terms refused next to the field."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from catalog.models import Offer
from catalog.services import Terms, offer_publish
from common.problems import ApiError
from tests import factories

pytestmark = pytest.mark.django_db


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def creator():
    return factories.creator(username="mira")


@pytest.fixture
def work(creator):
    return factories.work(creator, title="Harbour at dusk")


TERMS = {
    "currency": "USD",
    "licence_fee": "2.99",
    "allow_ai_train": "on",
    "price_ai_train": "0.07",
    "allow_derivative": "on",
    "price_derivative": "0",
    "derivative_share": "15",
    "commercial_use": "on",
    "attribution_required": "on",
}


def test_the_new_terms_form_has_nothing_ticked_and_no_price(creator, work):
    body = client_for(creator).get(f"/dashboard/works/{work.pk}/offers/new/").content.decode()
    assert "checked" not in body.replace(
        'name="attribution_required" id="id_attribution_required" checked', ""
    )
    assert 'value="0.05"' not in body
    assert 'name="licence_fee" value' not in body  # no default fee either
    assert 'name="derivative_share" value' not in body


def test_review_shows_the_plain_words_and_rsl_and_publishes_nothing(creator, work):
    response = client_for(creator).post(
        f"/dashboard/works/{work.pk}/offers/new/", {**TERMS, "step": "review"}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "Confirm and publish" in body
    assert "You may train AI models on it (0.07 USD per use)." in body
    assert "The licence costs 2.99 USD, paid once." in body
    assert "The creator receives 15% of what your derivative earns." in body
    assert "&lt;permits type=&quot;usage&quot;&gt;ai-train&lt;/permits&gt;" in body
    assert 'type="hidden" name="price_ai_train" value="0.07"' in body
    assert not Offer.objects.filter(work=work).exists()


def test_confirming_publishes_exactly_the_reviewed_terms(creator, work):
    client = client_for(creator)
    response = client.post(f"/dashboard/works/{work.pk}/offers/new/", {**TERMS, "step": "confirm"})
    assert response.status_code == 302
    offer = Offer.objects.get(work=work)
    assert offer.version == 1
    assert {u.use_class: u.price_minor for u in offer.uses.all()} == {"ai-train": 7, "derivative": 0}
    assert (offer.licence_fee_minor, offer.derivative_share_bps, offer.commercial_use) == (299, 1500, True)


def test_back_to_edit_keeps_the_values_and_publishes_nothing(creator, work):
    body = (
        client_for(creator)
        .post(f"/dashboard/works/{work.pk}/offers/new/", {**TERMS, "step": "edit"})
        .content.decode()
    )
    assert 'name="price_ai_train" value="0.07"' in body
    assert "Review terms" in body
    assert not Offer.objects.filter(work=work).exists()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"commercial_use": ""}, "commercial_use", "Derivative works are made to be sold"),
        ({"allow_derivative": "", "price_derivative": ""}, "derivative_share", "needs derivative works"),
        ({"price_ai_train": ""}, "price_ai_train", "Set a price per use for “AI training” (0 for free)."),
        ({"price_voice": "1"}, "price_voice", "You set a price for “Voice” but do not allow it"),
        ({"derivative_share": ""}, "derivative_share", "Choose your share of derivatives"),
        ({"licence_fee": ""}, "licence_fee", "Set the licence fee (0 for a free licence)."),
        (
            {
                "allow_derivative": "",
                "price_derivative": "",
                "derivative_share": "",
                "derivative_approval_required": "on",
            },
            "derivative_approval_required",
            "Approving derivative licences needs derivative works to be allowed.",
        ),
    ],
)
def test_contradictory_or_unchosen_terms_are_refused_next_to_the_field(creator, work, change, field, message):
    data = {key: value for key, value in {**TERMS, **change}.items() if value != ""}
    for step in ("review", "confirm"):
        response = client_for(creator).post(f"/dashboard/works/{work.pk}/offers/new/", {**data, "step": step})
        assert response.status_code == 400
        form = response.context["form"]
        assert any(message in error for error in form.errors[field]), form.errors
    assert not Offer.objects.filter(work=work).exists()


def test_the_preview_refuses_contradictory_terms_too(creator, work):
    body = (
        client_for(creator)
        .post(f"/dashboard/works/{work.pk}/offers/preview/", {**TERMS, "commercial_use": ""})
        .content.decode()
    )
    assert "Fix these to see the preview" in body
    assert "non-commercial terms forbid" in body
    assert "make and sell derivative works" not in body


def test_the_service_refuses_an_approval_of_derivatives_that_are_not_allowed(creator, work):
    terms = Terms(currency="USD", uses={"ai-train": 5}, derivative_approval_required=True)
    with pytest.raises(ApiError) as refused:
        offer_publish(work=work, user=creator, terms=terms)
    assert refused.value.problem_code == "contradictory_terms"
    assert not Offer.objects.filter(work=work).exists()


def test_another_creator_cannot_review_or_publish_terms_of_this_work(work):
    eve = client_for(factories.creator(username="eve"))
    assert (
        eve.post(f"/dashboard/works/{work.pk}/offers/new/", {**TERMS, "step": "confirm"}).status_code == 404
    )
    assert not Offer.objects.filter(work=work).exists()
