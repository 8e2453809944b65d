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


def _propose(client, work, email: str):
    return client.post(
        f"/api/v1/works/{work.pk}/split-sheets",
        {"shares": [{"email": "owner@example.com", "share_bps": 5000}, {"email": email, "share_bps": 5000}]},
        format="json",
    )


def test_an_invitation_answers_the_same_whether_or_not_the_address_has_an_account(
    as_user, django_capture_on_commit_callbacks
) -> None:
    # given a creator, and one address with an account (and a display name) and one without
    owner = factories.creator(email="owner@example.com")
    factories.fan(email="known@example.com", display_name="Known Person")
    first, second = factories.work(owner, title="One"), factories.work(owner, title="Two")

    # when the creator names each in a split sheet
    with django_capture_on_commit_callbacks(execute=True):
        known = _propose(as_user(owner), first, "known@example.com").json()
        unknown = _propose(as_user(owner), second, "nobody@example.com").json()

    # then the two answers differ only by the address typed and the ids: no name, no account, same status
    def shape(body, email):
        shares = [{**share, "email": share["email"].replace(email, "X")} for share in body["shares"]]
        return [{k: v for k, v in share.items() if k != "accepted_at"} for share in shares], body["status"]

    assert shape(known, "known@example.com") == shape(unknown, "nobody@example.com")
    assert "Known Person" not in str(known)
    assert [share["user"] for share in known["shares"]][1] is None
    # and both invitations are the same mail but for the token
    bodies = {
        m.to[0]: re.sub(r"token(:\n|=)\S+", "token", str(m.body)).replace('"Two"', '"One"')
        for m in mail.outbox
    }
    assert bodies["known@example.com"] == bodies["nobody@example.com"]


def test_the_invitation_carries_only_a_bounded_escaped_title_of_the_proposers_text(
    as_user, django_capture_on_commit_callbacks
) -> None:
    # given a proposer who chose a display name and a title that read like instructions
    owner = factories.creator(email="owner@example.com", display_name="Tribute Security Team")
    title = "Urgent\nYour account is suspended: visit https://evil.example/login now "
    title += "x" * 200 + " \u13aapple"
    work = factories.work(owner, title=title[:200])

    # when a co-owner is invited
    with django_capture_on_commit_callbacks(execute=True):
        assert _propose(as_user(owner), work, "victim@example.com").status_code == 201

    # then the mail names no proposer, keeps the title on one quoted line of at most 60 characters,
    # and no link of the proposer's is clickable
    (message,) = mail.outbox
    assert "Tribute Security Team" not in f"{message.subject} {message.body}"
    assert "Urgent" not in message.subject
    assert '"Urgent Your account is suspended: visit https:[//]evil.exampl~"' in message.body
    assert "https://evil" not in message.body
    assert "\nYour account" not in message.body


def test_co_owners_see_each_others_names_not_addresses(as_user, django_capture_on_commit_callbacks) -> None:
    # given an active sheet of three accepted co-owners
    owner = factories.creator(email="owner@example.com", display_name="Owner")
    a = factories.creator(email="a@example.com", display_name="Ada")
    b = factories.creator(email="b@example.com", display_name="Bo")
    work = factories.work(owner)
    with django_capture_on_commit_callbacks(execute=True):
        sheet = (
            as_user(owner)
            .post(
                f"/api/v1/works/{work.pk}/split-sheets",
                {
                    "shares": [
                        {"email": "owner@example.com", "share_bps": 5000},
                        {"email": "a@example.com", "share_bps": 2500},
                        {"email": "b@example.com", "share_bps": 2500},
                    ]
                },
                format="json",
            )
            .json()
        )
    tokens = {m.to[0]: _token(m) for m in mail.outbox}
    for user in (a, b):
        accept = as_user(user).post(
            "/api/v1/split-invitations/accept", {"token": tokens[user.email]}, format="json"
        )
        assert accept.status_code == 200

    # when co-owner Ada reads the sheet
    seen = as_user(a).get(f"/api/v1/split-sheets/{sheet['id']}").json()

    # then she sees names, her own address only, and nobody else's
    assert [(s["user"], s["email"]) for s in seen["shares"]] == [
        ("Owner", None),
        ("Ada", "a@example.com"),
        ("Bo", None),
    ]
    assert "b@example.com" not in str(seen) and "owner@example.com" not in str(seen)


def test_an_unverified_account_cannot_take_a_share_sent_to_its_address(
    as_user, django_capture_on_commit_callbacks
) -> None:
    # given an invitation to an address that a squatter signed up with but never confirmed
    owner = factories.creator(email="owner@example.com")
    squatter = factories.fan(email="victim@example.com", display_name="Squatter", email_verified=False)
    work = factories.work(owner)
    with django_capture_on_commit_callbacks(execute=True):
        _propose(as_user(owner), work, "victim@example.com")
    token = _token(mail.outbox[0])

    # when the squatter tries to accept
    response = as_user(squatter).post("/api/v1/split-invitations/accept", {"token": token}, format="json")

    # then it is refused and the share stays open and unnamed
    assert response.status_code == 403 and response.json()["code"] == "email_not_verified"
    share = SplitSheet.objects.get(work=work, status="pending").shares.get(email="victim@example.com")
    assert (share.user_id, share.accepted_at) == (None, None)
