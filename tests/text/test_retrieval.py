"""Per-token retrieval: passages of licensed text sold at each work's own price per 1,000 tokens, in one
charge with one receipt; refused requests charge nothing; a passage quoted with its receipt is covered and
one quoted without it opens a claim."""

from __future__ import annotations

import math
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from access import receipts, signing
from access.models import Retrieval, RetrievalPassage, SpendCap
from catalog import selectors as catalog_selectors
from catalog.consent import consent_withdraw
from catalog.models import Claim
from common.money import Money
from datasets.services.opt_outs import training_opt_out_set
from matching import index
from matching import services as media_services
from matching.models import Fingerprint, FingerprintKind
from media.text import passages
from royalties.funding import prepaid_fund
from royalties.models import RevenueItem
from royalties.selectors import prepaid_available
from tests import factories
from tests.text import samples
from tests.text.test_text_tracing import register_text

pytestmark = pytest.mark.django_db
QUERY = "What happened to the fishing boat that did not come back to the harbour?"


@pytest.fixture
def market(with_key):
    writer, scholar, vendor = factories.creator(), factories.creator(), factories.vendor()
    harbour = register_text(
        writer,
        samples.ARTICLE,
        uses={"ai-input": 0, "ai-index": 0},
        token_prices={"ai-input": 20, "ai-index": 7},
    )
    sheets = register_text(
        scholar, samples.OTHER, title="Spreadsheets", uses={"ai-input": 0}, token_prices={"ai-input": 50}
    )
    training_only = register_text(
        scholar,
        samples.LYRICS,
        title="Lantern",
        kind="lyrics",
        uses={"ai-train": 0},
        token_prices={"ai-train": 5},
    )
    organisation = vendor.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(1_000, "USD"), external_ref="fund-1")
    client = with_key(factories.key(vendor, "access", "outputs", "read"))
    return {
        "vendor": vendor,
        "organisation": organisation,
        "client": client,
        "harbour": harbour,
        "sheets": sheets,
        "training_only": training_only,
    }


def _retrieve(client, key: str | None = None, **body):
    fields = {"query": QUERY, "max_tokens": 400, "use": "ai-input", "territory": "GB"}
    fields.update(body)
    headers = {"HTTP_IDEMPOTENCY_KEY": key or str(uuid.uuid4())}
    return client.post("/api/v1/retrieve", fields, format="json", **headers)


def test_a_text_is_retrieved_for_its_price_per_token_and_the_quoted_passage_traces_back_to_it(market) -> None:
    client, organisation, harbour = market["client"], market["organisation"], market["harbour"]

    response = _retrieve(client)

    assert response.status_code == 200
    body = response.json()
    assert body["tokenizer"] == passages.TOKENIZER_NAME and body["currency"] == "USD"
    sold = body["passages"]
    assert sold and sold[0]["work"] == harbour.pk
    assert market["training_only"].pk not in {p["work"] for p in sold}  # its terms do not allow ai-input
    source = harbour.text_versions.get().text
    for passage in sold:
        price = 20 if passage["work"] == harbour.pk else 50
        assert passage["tokens"] == passages.count_tokens([passage["text"]])[0]
        assert passage["price_minor"] == math.ceil(passage["tokens"] * price / 1000)
        if passage["work"] == harbour.pk:
            assert passage["text"] == source[passage["start"] : passage["end"]]
    assert sum(p["tokens"] for p in sold) == body["total_tokens"] <= 400
    assert body["total_minor"] == sum(p["price_minor"] for p in sold) > 0
    assert prepaid_available(organisation=organisation, currency="USD") == 1_000 - body["total_minor"]
    assert RevenueItem.objects.count() == len(sold)
    assert sorted(RevenueItem.objects.values_list("amount_minor", flat=True)) == sorted(
        p["price_minor"] for p in sold
    )
    claims = receipts.verify(body["receipt"], signing.public_keys())
    assert claims["jti"] == body["retrieval_id"] and claims["total_minor"] == body["total_minor"]
    assert [(p["work"], p["tokens"], p["price_minor"]) for p in claims["passages"]] == [
        (p["work"], p["tokens"], p["price_minor"]) for p in sold
    ]
    assert claims["tokenizer"] == passages.TOKENIZER_NAME
    stored = Retrieval.objects.get()
    assert (stored.total_minor, stored.total_tokens) == (body["total_minor"], body["total_tokens"])
    assert RetrievalPassage.objects.filter(retrieval=stored).count() == len(sold)

    # The vendor's model quotes the passage in its answer; a trace finds the article, covered by the licence
    # the retrieval accepted.
    answer = f"According to the local paper: {sold[0]['text']} So the boat came back."
    traced = client.post("/api/v1/trace", {"text": answer}, format="json").json()
    assert [(m["work"], m["kind"], m["covered"]) for m in traced["matches"]][:1] == [
        (harbour.pk, "quote", True)
    ]

    # Registered with its receipt, the output is confirmed and opens no claim.
    output = client.post(
        "/api/v1/outputs",
        {"file": SimpleUploadedFile("answer.txt", answer.encode()), "receipts": [body["retrieval_id"]]},
        format="multipart",
    )
    assert output.status_code == 201
    assert output.json()["confirmed_works"] == [harbour.pk] and output.json()["claims"] == []
    assert Claim.objects.count() == 0


def test_a_text_is_sold_from_the_static_index_before_its_minilm_passages_exist(market) -> None:
    """The retrieval index's static passages are stored first and found alone: a text is for sale while
    MiniLM is still embedding it."""
    Fingerprint.objects.filter(kind=FingerprintKind.PASSAGES).delete()
    index.reset()

    response = _retrieve(market["client"])

    assert len(index.current().passages) == 0 and len(index.current().search) > 0
    assert response.status_code == 200
    sold = response.json()["passages"]
    assert sold and sold[0]["work"] == market["harbour"].pk
    assert RevenueItem.objects.count() == len(sold)


def test_both_indexes_rank_the_passage_a_query_describes_first(market) -> None:
    """The fused relevance puts the harbour story first for a question about it, with or without MiniLM's
    half, and an unrelated question finds nothing of it above the retrieval floor."""
    source = market["harbour"].text_versions.get().text
    best_fused = media_services.passage_search(text=QUERY, limit=5)[0]
    Fingerprint.objects.filter(kind=FingerprintKind.PASSAGES).delete()
    index.reset()
    best_static = media_services.passage_search(text=QUERY, limit=5)[0]

    for ref, relevance in (best_fused, best_static):
        assert "boat" in source[ref.start : ref.end] and relevance > catalog_selectors.RETRIEVAL_MIN_SCORE
    recipe = "Preheat the oven and whisk three eggs with sugar"
    unrelated = media_services.passage_search(text=recipe, limit=5)
    harbour_hashes = set(market["harbour"].assets.values_list("blob_id", flat=True))
    harbour_scores = [relevance for ref, relevance in unrelated if ref.content in harbour_hashes]
    assert harbour_scores and max(harbour_scores) < catalog_selectors.RETRIEVAL_MIN_SCORE


def test_a_snippet_for_an_index_is_cut_short_and_priced_by_its_own_tokens(market) -> None:
    response = _retrieve(market["client"], use="ai-index", max_tokens=1000)

    assert response.status_code == 200
    sold = response.json()["passages"]
    assert [p["work"] for p in sold] == [market["harbour"].pk] * len(sold)
    assert all(len(p["text"].split()) <= 40 for p in sold)
    assert all(p["price_minor"] == math.ceil(p["tokens"] * 7 / 1000) for p in sold)


def test_ai_train_sells_the_whole_text_of_a_work_once(market) -> None:
    response = _retrieve(market["client"], use="ai-train", max_tokens=5000)

    assert response.status_code == 200
    [sold] = response.json()["passages"]
    text = market["training_only"].text_versions.get().text
    assert (sold["work"], sold["start"], sold["end"], sold["text"]) == (
        market["training_only"].pk,
        0,
        len(text),
        text,
    )
    assert sold["price_minor"] == math.ceil(passages.count_tokens([text])[0] * 5 / 1000)


def test_a_do_not_train_text_is_not_sold_for_training_and_charges_nothing(market) -> None:
    lyrics = market["training_only"]
    training_opt_out_set(user=lyrics.created_by, work=lyrics)

    response = _retrieve(market["client"], use="ai-train", max_tokens=5000)

    assert response.status_code == 200
    assert response.json()["passages"] == []
    assert prepaid_available(organisation=market["organisation"], currency="USD") == 1_000
    assert not RevenueItem.objects.exists()


def test_a_withdrawn_use_stops_the_next_retrieval_of_that_text(market) -> None:
    harbour = market["harbour"]
    assert harbour.pk in {p["work"] for p in _retrieve(market["client"]).json()["passages"]}
    consent_withdraw(work=harbour, user=harbour.created_by, use_class="ai-input")

    after = _retrieve(market["client"])

    assert after.status_code == 200
    assert harbour.pk not in {p["work"] for p in after.json()["passages"]}


def test_a_licence_on_earlier_terms_keeps_its_price_and_a_new_licensee_pays_the_new_one(
    market, with_key
) -> None:
    harbour = market["harbour"]
    _retrieve(market["client"])  # accepts the terms of version 1: 20 per 1,000 tokens
    factories.offer(harbour.created_by, harbour, uses={"ai-input": 0}, token_prices={"ai-input": 90})
    newcomer = factories.vendor()
    prepaid_fund(organisation=newcomer.organisations.get(), amount=Money(1_000, "USD"), external_ref="fund-2")
    newcomer_client = with_key(factories.key(newcomer, "access"))

    for client, per_1k in ((market["client"], 20), (newcomer_client, 90)):
        sold = [p for p in _retrieve(client).json()["passages"] if p["work"] == harbour.pk]
        assert sold
        assert all(p["price_minor"] == math.ceil(p["tokens"] * per_1k / 1000) for p in sold)


def test_a_price_cap_leaves_out_passages_that_would_exceed_it(market) -> None:
    response = _retrieve(market["client"], max_price_minor=3)

    assert response.status_code == 200
    body = response.json()
    assert body["total_minor"] <= 3
    assert (
        prepaid_available(organisation=market["organisation"], currency="USD") == 1_000 - body["total_minor"]
    )


def test_a_replay_answers_the_same_receipt_and_charges_once(market) -> None:
    first = _retrieve(market["client"], key="q-1")
    again = _retrieve(market["client"], key="q-1")
    other = _retrieve(market["client"], key="q-1", max_tokens=100)

    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert Retrieval.objects.count() == 1
    spent = first.json()["total_minor"]
    assert prepaid_available(organisation=market["organisation"], currency="USD") == 1_000 - spent


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"max_tokens": 0}, "validation_error"),
        ({"max_tokens": 10**9}, "validation_error"),
        ({"use": "ai-generate"}, "validation_error"),
        ({"use": "everything"}, "validation_error"),
        ({"query": ""}, "validation_error"),
        ({"query": "x" * 5000}, "validation_error"),
        ({"max_price_minor": -1}, "validation_error"),
        ({"territory": "Great Britain"}, "validation_error"),
        ({"currency": "XXX"}, "unsupported_currency"),
    ],
)
def test_bad_retrieval_requests_are_refused_and_charge_nothing(market, body, code) -> None:
    response = _retrieve(market["client"], **body)

    assert response.status_code == 400 and response.json()["code"] == code
    assert (Retrieval.objects.count(), RevenueItem.objects.count()) == (0, 0)
    assert prepaid_available(organisation=market["organisation"], currency="USD") == 1_000


def test_a_retrieval_without_an_idempotency_key_is_refused(market) -> None:
    response = market["client"].post(
        "/api/v1/retrieve",
        {"query": QUERY, "max_tokens": 100, "use": "ai-input", "territory": "GB"},
        format="json",
    )
    assert response.status_code == 400 and response.json()["code"] == "idempotency_key_required"
    assert Retrieval.objects.count() == 0


def test_a_short_balance_refuses_the_whole_retrieval(market, with_key) -> None:
    poor = factories.vendor(organisation_name="Poor AI")
    prepaid_fund(organisation=poor.organisations.get(), amount=Money(1, "USD"), external_ref="fund-poor")

    response = _retrieve(with_key(factories.key(poor, "access")))

    assert response.status_code == 402 and response.json()["code"] == "insufficient_funds"
    assert (Retrieval.objects.count(), RevenueItem.objects.count()) == (0, 0)
    assert prepaid_available(organisation=poor.organisations.get(), currency="USD") == 1


def test_the_monthly_spend_cap_stops_a_retrieval_that_would_exceed_it(market) -> None:
    SpendCap.objects.create(organisation=market["organisation"], currency="USD", cap_minor=2)

    response = _retrieve(market["client"])

    assert response.status_code == 403 and response.json()["code"] == "spend_cap_reached"
    assert (Retrieval.objects.count(), RevenueItem.objects.count()) == (0, 0)
    assert SpendCap.objects.get().spent_minor == 0
    assert prepaid_available(organisation=market["organisation"], currency="USD") == 1_000


def test_a_key_without_the_access_scope_cannot_retrieve(market, with_key) -> None:
    response = _retrieve(with_key(factories.key(market["vendor"], "read")))

    assert response.status_code == 403
    assert Retrieval.objects.count() == 0


def test_the_writer_sees_which_passages_were_bought_and_others_see_nothing(market, as_user) -> None:
    body = _retrieve(market["client"]).json()
    harbour = market["harbour"]
    bought = [p for p in body["passages"] if p["work"] == harbour.pk]

    writer_rows = as_user(harbour.created_by).get("/api/v1/retrieved-passages").json()["results"]
    vendor_rows = market["client"].get("/api/v1/retrieved-passages").json()["results"]
    stranger_rows = as_user(factories.creator()).get("/api/v1/retrieved-passages").json()["results"]

    assert [(r["work"], r["start"], r["end"], r["tokens"], r["price_minor"]) for r in writer_rows] == [
        (p["work"], p["start"], p["end"], p["tokens"], p["price_minor"]) for p in bought
    ]
    assert {r["retrieval_id"] for r in writer_rows} == {body["retrieval_id"]}
    assert len(vendor_rows) == len(body["passages"])
    assert stranger_rows == []
