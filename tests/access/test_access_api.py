import base64
import json
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import ProtectedError
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access import fastpath, receipts
from access.apis import AccessApi
from access.models import AccessEvent, SpendCap
from accounts.models import ApiKey, User
from catalog.models import Grant
from common.money import Money
from royalties.funding import prepaid_fund
from royalties.models import RevenueItem
from royalties.selectors import prepaid_available, prepaid_key
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(with_key):
    creator, vendor = factories.creator(), factories.vendor()
    work = factories.work(creator, title="Harbour hymn")
    offer = factories.offer(
        creator, work, uses={"ai-train": 5, "ai-generate": 7}, territories=["US", "DE"], quota=3
    )
    organisation = vendor.organisations.get()
    client = with_key(factories.key(vendor, "access", "read"))
    return {
        "creator": creator,
        "vendor": vendor,
        "work": work,
        "offer": offer,
        "org": organisation,
        "client": client,
    }


def _fund(org, cents: int, ref: str = "t1") -> None:
    prepaid_fund(organisation=org, amount=Money(cents, "USD"), external_ref=ref)


def _access(client, work_id: int, *, use: str = "ai-train", territory: str = "US", key: str | None = None):
    return client.post(
        "/api/v1/access",
        {"work": work_id, "use": use, "territory": territory},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()),
    )


def test_a_paid_access_answers_with_a_receipt_anyone_can_verify_offline(market, api) -> None:
    _fund(market["org"], 100)

    response = _access(market["client"], market["work"].pk)

    assert response.status_code == 200
    body = response.json()
    assert (body["price_minor"], body["currency"], body["use"], body["offer_version"]) == (
        5,
        "USD",
        "ai-train",
        1,
    )
    keys = api.get("/.well-known/jwks.json").json()["keys"]
    from jwt.algorithms import OKPAlgorithm

    public = [OKPAlgorithm.from_jwk(json.dumps(k)) for k in keys]
    claims = receipts.verify(body["receipt"], public)  # type: ignore[arg-type]
    assert (claims["jti"], claims["work"], claims["price_minor"], claims["sub"]) == (
        body["access_id"],
        market["work"].pk,
        5,
        f"organisation:{market['org'].pk}",
    )
    assert prepaid_available(organisation=market["org"], currency="USD") == 95
    with pytest.raises(receipts.InvalidReceipt):
        receipts.verify(body["receipt"][:-4] + "AAAA", public)  # type: ignore[arg-type]


def test_the_same_key_and_body_replays_the_first_response_byte_for_byte_and_charges_once(market) -> None:
    _fund(market["org"], 100)
    first = _access(market["client"], market["work"].pk, key="k-1")
    again = _access(market["client"], market["work"].pk, key="k-1")
    other = _access(market["client"], market["work"].pk, key="k-1", use="ai-generate")

    assert again.status_code == 200 and again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert AccessEvent.objects.count() == 1
    assert prepaid_available(organisation=market["org"], currency="USD") == 95


def test_not_enough_balance_is_402_with_the_ways_to_pay_and_charges_nothing(market) -> None:
    _fund(market["org"], 3)

    response = _access(market["client"], market["work"].pk, key="poor")

    assert response.status_code == 402
    body = response.json()
    assert (body["code"], body["price_minor"], body["balance_minor"], body["currency"]) == (
        "insufficient_funds",
        5,
        3,
        "USD",
    )
    top_up_path = body["top_up_url"].removeprefix("http://127.0.0.1:8000")
    assert top_up_path == "/dashboard/balance/"
    top_up_page = Client()
    top_up_page.force_login(market["vendor"])
    assert top_up_page.get(top_up_path).status_code == 200
    required = json.loads(base64.b64decode(response["PAYMENT-REQUIRED"]))
    [accept] = required["accepts"]
    assert (required["x402Version"], accept["scheme"], accept["amount"]) == (2, "exact", "50000")
    assert accept["network"].startswith("eip155:")
    assert AccessEvent.objects.count() == 0
    assert prepaid_available(organisation=market["org"], currency="USD") == 3
    assert Grant.objects.get(offer=market["offer"]).accesses_used == 0  # the refused use is not counted
    _fund(market["org"], 10, ref="t2")
    assert _access(market["client"], market["work"].pk, key="poor").status_code == 200


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"use": "voice"}, "use_not_allowed"),
        ({"territory": "FR"}, "territory_not_allowed"),
    ],
)
def test_a_use_the_terms_refuse_is_403_naming_the_term(market, payload, code) -> None:
    _fund(market["org"], 100)
    response = _access(market["client"], market["work"].pk, **payload)
    assert response.status_code == 403 and response.json()["code"] == code
    assert AccessEvent.objects.count() == 0
    assert prepaid_available(organisation=market["org"], currency="USD") == 100


@pytest.mark.postgres
def test_on_postgresql_an_access_is_charged_in_one_statement(market) -> None:
    _fund(market["org"], 100)
    assert _access(market["client"], market["work"].pk).status_code == 200  # accepts the terms: a grant

    with CaptureQueriesContext(connection) as queries:
        response = _access(market["client"], market["work"].pk)

    assert response.status_code == 200
    # The test runs inside a transaction, so the charge takes a savepoint; a request in production does not.
    statements = [query["sql"] for query in queries.captured_queries if "SAVEPOINT" not in query["sql"]]
    # The key authenticated on the first call is reused, and confirmed inside the charge itself.
    assert len(statements) == 1, statements
    assert "accounts_apikey" in statements[0] and "royalties_ledgeraccount" in statements[0]
    with connection.cursor() as cursor:  # parsed and planned once for the connection, not per access
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%%g.id), hold%%'")
        assert cursor.fetchone() == (1,)
    grant = Grant.objects.get(offer=market["offer"])
    assert grant.accesses_used == 2
    revenue = RevenueItem.objects.get(source_key=f"access:{response.json()['access_id']}")
    assert (revenue.amount_minor, revenue.payer.key) == (5, prepaid_key(market["org"].pk, "USD"))
    assert AccessEvent.objects.get(access_id=response.json()["access_id"]).response_body == response.content
    assert prepaid_available(organisation=market["org"], currency="USD") == 90


def test_the_grants_quota_is_enforced(market) -> None:
    _fund(market["org"], 100)
    statuses = [_access(market["client"], market["work"].pk).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 403]
    assert prepaid_available(organisation=market["org"], currency="USD") == 85


def test_the_spend_cap_of_a_key_is_enforced(market) -> None:
    _fund(market["org"], 100)
    key = ApiKey.objects.get(user=market["vendor"])
    SpendCap.objects.create(organisation=market["org"], api_key=key, currency="USD", cap_minor=12)
    statuses = [_access(market["client"], market["work"].pk).status_code for _ in range(3)]
    assert statuses == [200, 200, 403]
    assert SpendCap.objects.get().spent_minor == 10


def test_unknown_or_unpublished_works_are_404(market) -> None:
    _fund(market["org"], 100)
    draft = factories.work(market["creator"], title="Draft")
    assert _access(market["client"], 999_999).status_code == 404
    assert _access(market["client"], draft.pk).json()["code"] == "work_not_found"


def test_terms_with_a_licence_fee_need_a_licence_first(market) -> None:
    work = factories.work(market["creator"], title="Paid")
    offer = factories.offer(market["creator"], work, uses={"ai-train": 5}, licence_fee_minor=500)
    response = _access(market["client"], work.pk)
    assert response.status_code == 403
    assert (response.json()["code"], response.json()["offer"]) == ("licence_required", offer.pk)


def test_a_key_without_the_access_scope_or_a_session_cannot_access(market, with_key, as_user) -> None:
    read_only = with_key(factories.key(market["vendor"], "read"))
    assert _access(read_only, market["work"].pk).status_code == 403
    assert _access(as_user(market["vendor"]), market["work"].pk).status_code == 403


def test_a_missing_idempotency_key_is_refused(market) -> None:
    response = market["client"].post(
        "/api/v1/access", {"work": market["work"].pk, "use": "ai-train", "territory": "US"}, format="json"
    )
    assert response.status_code == 400 and response.json()["code"] == "idempotency_key_required"


@override_settings(DEBUG=False)
def test_usage_groups_accesses_for_the_vendor_and_the_creator(market, as_user) -> None:
    _fund(market["org"], 100)
    for use in ("ai-train", "ai-train", "ai-generate"):
        _access(market["client"], market["work"].pk, use=use)
    for user in (market["vendor"], market["creator"]):
        rows = as_user(user).get("/api/v1/usage").json()
        assert sorted((r["use_class"], r["accesses"], r["spend_minor"]) for r in rows) == [
            ("ai-generate", 1, 7),
            ("ai-train", 2, 10),
        ]
    assert as_user(factories.creator()).get("/api/v1/usage").json() == []


def test_a_revoked_licence_is_refused_on_the_next_access_and_charges_nothing(market) -> None:
    from catalog.models import Grant

    _fund(market["org"], 100)
    assert _access(market["client"], market["work"].pk).status_code == 200
    Grant.objects.filter(organisation=market["org"]).update(status="revoked")

    response = _access(market["client"], market["work"].pk)

    assert response.status_code == 403 and response.json()["code"] == "licence_revoked"
    assert AccessEvent.objects.count() == 1
    assert prepaid_available(organisation=market["org"], currency="USD") == 95


def _both_paths(market, monkeypatch, **payload):
    """The same call made twice, each with its own Idempotency-Key: once as it comes, on the plain path,
    and once with the plain path switched off, through DRF's full dispatch."""
    body = {"work": market["work"].pk, "use": "ai-train", "territory": "US", **payload}

    def call():
        return market["client"].post(
            "/api/v1/access", body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
        )

    plain = call()
    with monkeypatch.context() as patch:
        patch.setattr(fastpath, "plain_call", lambda request: None)
        general = call()
    return plain, general


def _headers(response) -> dict[str, str]:
    return {name: value for name, value in response.items() if name != "Content-Length"}


@pytest.mark.parametrize(
    ("funds", "payload", "status"),
    [(100, {}, 200), (100, {"use": "voice"}, 403), (1, {}, 402), (100, {"work": 10**9}, 404)],
)
def test_the_plain_call_answers_as_the_general_path_does(market, monkeypatch, funds, payload, status) -> None:
    _fund(market["org"], funds)

    plain, general = _both_paths(market, monkeypatch, **payload)

    assert plain.status_code == general.status_code == status
    assert _headers(plain).keys() == _headers(general).keys()
    for name in ("Content-Type", "Allow", "Vary"):
        assert plain[name] == general[name]
    if status == 200:
        assert plain.json().keys() == general.json().keys()
    else:
        assert plain.json() == general.json()
    if status == 402:
        assert plain["PAYMENT-REQUIRED"] == general["PAYMENT-REQUIRED"]


def test_the_plain_call_does_not_build_drf_requests(market, monkeypatch) -> None:
    """The common call is answered without DRF's request wrapping; an odd one still gets it."""
    _fund(market["org"], 100)

    def refuse(*args, **kwargs):
        raise AssertionError("DRF request built")

    monkeypatch.setattr(AccessApi, "initialize_request", refuse)
    assert _access(market["client"], market["work"].pk).status_code == 200
    with pytest.raises(AssertionError, match="DRF request built"):
        market["client"].post(
            "/api/v1/access",
            {"work": market["work"].pk, "use": "ai-train", "territory": "US"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="odd",
            HTTP_ACCEPT="text/html",
        )


def test_access_events_carry_only_the_indexes_their_lookups_use() -> None:
    """Every index is one more page each access writes: none per foreign key."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, AccessEvent._meta.db_table)
    indexed = {
        tuple(found["columns"])
        for found in constraints.values()
        if (found["index"] or found["unique"]) and not found["primary_key"]
    }
    assert indexed == {
        ("access_id",),
        ("organisation_id", "idempotency_key"),
        ("created_at",),
        ("organisation_id", "created_at"),
        ("work_id", "created_at"),
    }


@pytest.mark.parametrize("change", ["revoked", "expired", "user deactivated"])
def test_a_key_reused_from_memory_is_refused_once_it_is_no_longer_usable_and_charges_nothing(
    market, change
) -> None:
    _fund(market["org"], 100)
    assert _access(market["client"], market["work"].pk).status_code == 200  # authenticated and remembered
    keys = ApiKey.objects.filter(organisation=market["org"])
    if change == "revoked":
        keys.update(revoked_at=timezone.now())
    elif change == "expired":
        keys.update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        User.objects.filter(pk=market["vendor"].pk).update(is_active=False)

    response = _access(market["client"], market["work"].pk)

    assert response.status_code == 401
    assert response.json()["detail"] == "The API key is invalid, expired or revoked."
    assert AccessEvent.objects.count() == 1
    assert Grant.objects.get(offer=market["offer"]).accesses_used == 1
    assert prepaid_available(organisation=market["org"], currency="USD") == 95


def test_a_key_revoked_before_its_first_use_of_a_work_accepts_no_terms(market) -> None:
    _fund(market["org"], 100)
    other = factories.work(market["creator"], title="Second hymn")
    factories.offer(market["creator"], other, uses={"ai-train": 5})
    assert _access(market["client"], market["work"].pk).status_code == 200
    ApiKey.objects.filter(organisation=market["org"]).update(revoked_at=timezone.now())

    response = _access(market["client"], other.pk)

    assert response.status_code == 401
    assert not Grant.objects.filter(offer__work=other).exists()


def test_the_parents_of_an_access_event_are_still_protected_without_database_constraints(market) -> None:
    _fund(market["org"], 100)
    event_id = AccessEvent.objects.get(
        access_id=_access(market["client"], market["work"].pk).json()["access_id"]
    ).pk

    for parent in (market["work"], market["offer"], market["org"]):
        with pytest.raises(ProtectedError) as refused:
            parent.delete()
        assert event_id in {obj.pk for obj in refused.value.protected_objects if isinstance(obj, AccessEvent)}
    ApiKey.objects.filter(organisation=market["org"]).delete()
    assert AccessEvent.objects.get(pk=event_id).api_key_id is None


@pytest.mark.postgres
def test_on_postgresql_the_migrated_database_has_no_access_function() -> None:
    # The one-statement charge is plain SQL: the hold and the quota rules live in one place each.
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_proc WHERE proname = 'access_count_and_hold'")
        assert cursor.fetchone() == (0,)


@pytest.mark.postgres
def test_on_postgresql_a_short_balance_in_the_one_statement_counts_no_use(market) -> None:
    _fund(market["org"], 5)
    assert _access(market["client"], market["work"].pk).status_code == 200  # the grant, and 5 held
    grant = Grant.objects.get(offer=market["offer"])
    assert grant.accesses_used == 1

    refused = _access(market["client"], market["work"].pk)

    assert refused.status_code == 402
    grant.refresh_from_db()
    assert grant.accesses_used == 1  # the hold refused, so the statement counted nothing
    assert AccessEvent.objects.count() == 1
