import re

import pytest
from django.core import mail

from catalog.models import SplitSheet
from tests import factories

pytestmark = pytest.mark.django_db


def _token(message) -> str:
    return re.search(r"token:\n(\S+)", message.body).group(1)


def test_a_sheet_with_co_owners_becomes_active_once_everyone_has_accepted(
    as_user, django_capture_on_commit_callbacks
) -> None:
    singer = factories.creator(email="singer@example.com")
    producer = factories.creator(email="producer@example.com")
    work = factories.work(singer, kind="audio")

    with django_capture_on_commit_callbacks(execute=True):
        response = as_user(singer).post(
            f"/api/v1/works/{work.pk}/split-sheets",
            {
                "shares": [
                    {"email": "singer@example.com", "share_bps": 6000},
                    {"email": "Producer@example.com", "share_bps": 2500},
                    {"email": "newcomer@example.com", "share_bps": 1500},
                ]
            },
            format="json",
        )

    assert response.status_code == 201
    assert (response.json()["version"], response.json()["status"]) == (2, "pending")
    assert sorted(m.to[0] for m in mail.outbox) == ["newcomer@example.com", "producer@example.com"]
    tokens = {m.to[0]: _token(m) for m in mail.outbox}

    accepted = as_user(producer).post(
        "/api/v1/split-invitations/accept", {"token": tokens["producer@example.com"]}, format="json"
    )
    assert accepted.json()["status"] == "pending"
    newcomer = factories.fan(email="newcomer@example.com")
    assert (
        as_user(producer)
        .post("/api/v1/split-invitations/accept", {"token": tokens["newcomer@example.com"]}, format="json")
        .status_code
        == 404
    )
    done = as_user(newcomer).post(
        "/api/v1/split-invitations/accept", {"token": tokens["newcomer@example.com"]}, format="json"
    )

    assert done.json()["status"] == "active"
    statuses = dict(SplitSheet.objects.filter(work=work).values_list("version", "status"))
    assert statuses == {1: "superseded", 2: "active"}
    assert as_user(newcomer).get(f"/api/v1/works/{work.pk}").status_code == 200


@pytest.mark.parametrize(
    ("shares", "code"),
    [
        (
            [{"email": "a@example.com", "share_bps": 6000}, {"email": "b@example.com", "share_bps": 3000}],
            "shares_do_not_sum_to_whole",
        ),
        (
            [{"email": "a@example.com", "share_bps": 5000}, {"email": "A@example.com", "share_bps": 5000}],
            "duplicate_owner",
        ),
        (
            [{"email": "a@example.com", "share_bps": 0}, {"email": "b@example.com", "share_bps": 10000}],
            "validation_error",
        ),
        ([], "validation_error"),
    ],
)
def test_a_bad_sheet_is_refused_and_the_active_sheet_stays(as_user, shares, code) -> None:
    creator = factories.creator()
    work = factories.work(creator)

    response = as_user(creator).post(
        f"/api/v1/works/{work.pk}/split-sheets", {"shares": shares}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert list(SplitSheet.objects.filter(work=work).values_list("version", "status")) == [(1, "active")]


def test_a_sheet_naming_only_the_creator_is_active_at_once(as_user) -> None:
    creator = factories.creator()
    work = factories.work(creator)
    response = as_user(creator).post(
        f"/api/v1/works/{work.pk}/split-sheets",
        {"shares": [{"email": creator.email, "share_bps": 10000}]},
        format="json",
    )
    assert response.json()["status"] == "active"


def test_a_new_proposal_cancels_the_pending_one(as_user) -> None:
    creator = factories.creator()
    work = factories.work(creator)
    client = as_user(creator)
    shares = [{"email": creator.email, "share_bps": 5000}, {"email": "x@example.com", "share_bps": 5000}]
    client.post(f"/api/v1/works/{work.pk}/split-sheets", {"shares": shares}, format="json")
    client.post(f"/api/v1/works/{work.pk}/split-sheets", {"shares": shares}, format="json")
    assert dict(SplitSheet.objects.filter(work=work).values_list("version", "status")) == {
        1: "active",
        2: "cancelled",
        3: "pending",
    }
