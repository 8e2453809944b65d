"""common.rows: the values written on the hot path are the ones the ORM would write."""

import uuid

import pytest
from django.db import connection
from django.utils import timezone

from access.models import AccessEvent
from common import rows
from royalties.models import RevenueItem, RevenueSource

pytestmark = pytest.mark.django_db


def _orm_values(model, values):
    return [
        field.get_db_prep_save(values.get(field.attname, field.get_default()), connection)
        for field in rows.insert_fields(model)
    ]


def _comparable(values):
    # PostgreSQL wraps bytes in an adapter object that compares by identity.
    return [(type(value), getattr(value, "obj", value)) for value in values]


def test_an_access_event_row_is_prepared_as_the_orm_prepares_it() -> None:
    event = {
        "access_id": uuid.uuid4(),
        "organisation_id": 1,
        "api_key_id": None,
        "idempotency_key": "key-1",
        "request_hash": "a" * 64,
        "work_id": 3,
        "offer_id": 4,
        "grant_id": 5,
        "use_class": "ai-train",
        "territory": "US",
        "price_minor": 12,
        "currency": "USD",
        "paid_by_x402": True,
        "response_body": b"{}",
        "created_at": timezone.now(),
    }
    assert _comparable(rows.prepared(AccessEvent, event)) == _comparable(_orm_values(AccessEvent, event))


def test_enum_members_still_go_through_the_fields_conversion() -> None:
    values = {
        "source": RevenueSource.ACCESS,  # a str subclass: converted, not passed through
        "source_key": "access:1",
        "work_id": 1,
        "amount_minor": 5,
        "currency": "USD",
        "fee_bps": 1000,
        "arose_at": timezone.now(),
        "payer_id": 2,
        "settlement_id": None,
        "created_at": timezone.now(),
    }
    prepared = rows.prepared(RevenueItem, values)
    assert _comparable(prepared) == _comparable(_orm_values(RevenueItem, values))
    assert "source" in rows._plain_fields(RevenueItem, connection.alias)  # a plain str would pass through
    assert prepared[0] is RevenueSource.ACCESS  # ... the member took the field's own path
