import pytest
from django.db import connection

from accounts import keys, services
from accounts.models import ApiKey
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_created_key_is_shown_once_and_stored_only_as_a_hash(as_user) -> None:
    user = factories.vendor()
    client = as_user(user)

    response = client.post(
        "/api/v1/api-keys", {"name": "crawler", "scopes": ["read", "access"]}, format="json"
    )

    assert response.status_code == 201
    secret = response.json()["secret"]
    assert secret.startswith("trb_")
    row = ApiKey.objects.get()
    assert row.scopes == ["access", "read"]
    assert row.organisation is not None and row.organisation.members.filter(pk=user.pk).exists()
    listed = client.get("/api/v1/api-keys").json()["results"]
    assert [item["prefix"] for item in listed] == [secret[:12]]
    assert all("secret" not in item for item in listed)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        assert secret not in repr(cursor.fetchall())


def test_a_key_authenticates_and_records_when_it_was_last_used(with_key) -> None:
    user = factories.creator()
    secret = factories.key(user, "read")

    response = with_key(secret).get("/api/v1/me")

    assert response.status_code == 200
    assert response.json()["username"] == user.username
    assert ApiKey.objects.get().last_used_at is not None


def test_a_revoked_key_gets_401_on_the_next_request(as_user, with_key) -> None:
    user = factories.creator()
    secret = factories.key(user, "read")
    client = with_key(secret)
    assert client.get("/api/v1/me").status_code == 200

    revoke = as_user(user).post(f"/api/v1/api-keys/{ApiKey.objects.get().pk}/revoke")

    assert revoke.status_code == 200 and revoke.json()["is_active"] is False
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "authentication_failed"


@pytest.mark.parametrize("secret", ["trb_garbage", "Bearer", "trb_" + "A" * 36])
def test_malformed_keys_get_401(with_key, secret) -> None:
    assert with_key(secret).get("/api/v1/me").status_code == 401


def test_a_key_without_the_write_scope_cannot_change_the_catalog(with_key) -> None:
    user = factories.creator()
    client = with_key(factories.key(user, "read"))

    response = client.post("/api/v1/works", {"title": "x", "kind": "image"}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert user.works.count() == 0


def test_keys_cannot_mint_keys(with_key) -> None:
    user = factories.creator()
    client = with_key(factories.key(user, "read", "write"))

    response = client.post("/api/v1/api-keys", {"name": "more", "scopes": ["read"]}, format="json")

    assert response.status_code == 403
    assert ApiKey.objects.count() == 1


def test_unknown_scopes_are_refused_and_nothing_is_created(as_user) -> None:
    response = as_user(factories.creator()).post(
        "/api/v1/api-keys", {"name": "x", "scopes": ["admin"]}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert ApiKey.objects.count() == 0


def test_another_users_key_cannot_be_revoked(as_user) -> None:
    owner, other = factories.creator(), factories.creator()
    factories.key(owner, "read")
    response = as_user(other).post(f"/api/v1/api-keys/{ApiKey.objects.get().pk}/revoke")
    assert response.status_code == 404
    assert ApiKey.objects.get().revoked_at is None


def test_a_reused_key_is_read_again_once_its_window_has_passed(monkeypatch) -> None:
    secret = factories.key(factories.vendor(), "access")
    lookups = []
    real_lookup = services.api_key_for_prefix

    def counted_lookup(*, prefix: str) -> ApiKey | None:
        lookups.append(prefix)
        return real_lookup(prefix=prefix)

    monkeypatch.setattr(services, "api_key_for_prefix", counted_lookup)
    services.api_key_forget()

    first = services.api_key_authenticate_reusing(secret=secret)
    again = services.api_key_authenticate_reusing(secret=secret)
    assert first is not None and again is first and len(lookups) == 1

    digest = keys.hash_key(secret)
    seen_at, key = services._keys_seen[digest]
    services._keys_seen[digest] = (seen_at - services.KEY_REUSE_S - 1, key)
    assert services.api_key_authenticate_reusing(secret=secret) is not first and len(lookups) == 2

    services.api_key_forget(api_key_id=first.pk)
    assert digest not in services._keys_seen
    assert services.api_key_authenticate_reusing(secret=keys.generate_key()) is None  # unknown: not kept
    assert services._keys_seen == {}
