"""Co-ownership invitations on the dashboard: the email links to a page that shows the invitation and
accepts it in one click; invitations wait on the invitee's dashboard; the inviter resends and cancels."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.test import Client

from accounts.models import User
from catalog.models import SplitShare, SplitSheet
from common import clock
from tests import factories

pytestmark = pytest.mark.django_db


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def propose(client: Client, work_id: int, rows: list[tuple[str, str, str, str]]) -> Any:
    data = {
        "shares-TOTAL_FORMS": str(len(rows)),
        "shares-INITIAL_FORMS": "0",
        "shares-MIN_NUM_FORMS": "0",
        "shares-MAX_NUM_FORMS": "50",
    }
    for number, (name, role, email, percent) in enumerate(rows):
        data.update(
            {
                f"shares-{number}-name": name,
                f"shares-{number}-role": role,
                f"shares-{number}-email": email,
                f"shares-{number}-percent": percent,
            }
        )
    return client.post(f"/dashboard/works/{work_id}/split-sheet/", data)


@pytest.fixture
def invited(django_capture_on_commit_callbacks):
    mira = factories.creator(username="mira", display_name="Mira Okafor")
    kai = factories.creator(username="kai", display_name="Kai")
    work = factories.work(mira, title="Harbour at dusk")
    with django_capture_on_commit_callbacks(execute=True):
        response = propose(
            client_for(mira),
            work.pk,
            [
                ("Mira Okafor", "Photographer", "mira@example.com", "62.5"),
                ("Kai Lindqvist", "Editor", "kai@example.com", "25"),
                ("Ana", "Producer", "ana@example.com", "12.5"),
            ],
        )
    assert response.status_code == 302
    return {"mira": mira, "kai": kai, "work": work}


def link_in(message) -> str:
    return re.search(r"https?://\S+/dashboard/invitations/accept/\?token=\S+", message.body).group(0)


def test_the_email_links_to_the_dashboard_page_not_the_api(invited):
    kai_mail = next(m for m in mail.outbox if m.to == ["kai@example.com"])
    link = link_in(kai_mail)
    links = re.findall(r"https?://\S+", str(kai_mail.body))
    assert len(links) == 1 and "/api/" not in links[0]  # the one link opens the dashboard page
    path = link[link.index("/dashboard/") :]
    page = client_for(invited["kai"]).get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Harbour at dusk" in html
    assert "25%" in html
    assert "Editor" in html
    assert "Mira Okafor" in html
    assert html.count('type="submit"') >= 1 and ">Accept<" in html


def test_accepting_from_the_link_takes_one_click_and_lists_the_user(invited):
    kai_mail = next(m for m in mail.outbox if m.to == ["kai@example.com"])
    link = link_in(kai_mail)
    token = link.split("token=")[1]
    response = client_for(invited["kai"]).post("/dashboard/invitations/accept/", {"token": token})
    assert response.status_code == 302
    assert response["Location"] == f"/dashboard/works/{invited['work'].pk}/"
    share = SplitShare.objects.get(email="kai@example.com")
    assert share.user == invited["kai"]
    assert share.accepted_at is not None
    assert share.name == "Kai Lindqvist" and share.role == "Editor"
    assert (
        SplitSheet.objects.filter(work=invited["work"]).order_by("-version").first().status == "pending"
    )  # Ana has not accepted yet


def test_signed_out_the_link_says_how_to_sign_in_and_come_back(invited):
    link = link_in(next(m for m in mail.outbox if m.to == ["kai@example.com"]))
    path = link[link.index("/dashboard/") :]
    page = Client().get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Harbour at dusk" not in html  # nothing of the invitation before the invitee signs in
    assert "/accounts/login/?next=%2Fdashboard%2Finvitations%2Faccept%2F%3Ftoken%3D" in html


def test_another_account_with_the_link_sees_nothing_and_changes_nothing(invited):
    link = link_in(next(m for m in mail.outbox if m.to == ["kai@example.com"]))
    token = link.split("token=")[1]
    other = factories.creator(username="eve")
    page = client_for(other).get(f"/dashboard/invitations/accept/?token={token}")
    assert page.status_code == 404
    assert "Harbour at dusk" not in page.content.decode()
    client_for(other).post("/dashboard/invitations/accept/", {"token": token})
    assert SplitShare.objects.get(email="kai@example.com").accepted_at is None


def test_pending_invitations_wait_on_the_invitees_dashboard_and_accept_from_there(invited):
    kai = client_for(invited["kai"])
    home = kai.get("/dashboard/").content.decode()
    assert "Co-ownership invitations waiting for you" in home
    assert "Harbour at dusk" in home
    share = SplitShare.objects.get(email="kai@example.com")
    assert kai.post(f"/dashboard/invitations/{share.pk}/accept/").status_code == 302
    share.refresh_from_db()
    assert share.user == invited["kai"]
    assert "Co-ownership invitations waiting for you" not in kai.get("/dashboard/").content.decode()


def test_an_invitation_of_someone_else_cannot_be_accepted_from_the_list(invited):
    share = SplitShare.objects.get(email="ana@example.com")
    assert client_for(invited["kai"]).post(f"/dashboard/invitations/{share.pk}/accept/").status_code == 404
    share.refresh_from_db()
    assert share.accepted_at is None and share.user is None


def test_the_inviter_resends_a_new_link_and_the_old_one_stops_working(
    invited, django_capture_on_commit_callbacks
):
    old = link_in(next(m for m in mail.outbox if m.to == ["kai@example.com"])).split("token=")[1]
    share = SplitShare.objects.get(email="kai@example.com")
    mira = client_for(invited["mira"])
    url = f"/dashboard/works/{invited['work'].pk}/invitations/{share.pk}/resend/"
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        mira.post(url)  # too soon: refused, nothing sent
    assert mail.outbox == []
    assert SplitShare.objects.get(pk=share.pk).invite_token_hash == share.invite_token_hash
    later = time_machine.travel(clock.now() + timedelta(minutes=11))
    with later, django_capture_on_commit_callbacks(execute=True):
        assert mira.post(url).status_code == 302
    assert [m.to for m in mail.outbox] == [["kai@example.com"]]
    new = link_in(mail.outbox[0]).split("token=")[1]
    assert new != old
    kai = client_for(invited["kai"])
    assert kai.get(f"/dashboard/invitations/accept/?token={old}").status_code == 404
    assert kai.get(f"/dashboard/invitations/accept/?token={new}").status_code == 200


def test_only_the_works_manager_may_resend_or_cancel(invited):
    share = SplitShare.objects.get(email="kai@example.com")
    kai = client_for(invited["kai"])
    base = f"/dashboard/works/{invited['work'].pk}/invitations/{share.pk}"
    assert kai.post(f"{base}/cancel/").status_code == 404
    assert kai.post(f"{base}/resend/").status_code == 404
    assert SplitSheet.objects.filter(work=invited["work"]).order_by("-version").first().status == "pending"


def test_cancelling_withdraws_the_proposal_and_its_links(invited):
    link = link_in(next(m for m in mail.outbox if m.to == ["kai@example.com"]))
    token = link.split("token=")[1]
    share = SplitShare.objects.get(email="kai@example.com")
    mira = client_for(invited["mira"])
    assert (
        mira.post(f"/dashboard/works/{invited['work'].pk}/invitations/{share.pk}/cancel/").status_code == 302
    )
    assert SplitSheet.objects.filter(work=invited["work"]).order_by("-version").first().status == "cancelled"
    kai = client_for(invited["kai"])
    assert kai.post("/dashboard/invitations/accept/", {"token": token}).status_code == 404
    share.refresh_from_db()
    assert share.accepted_at is None
    assert "Harbour at dusk" not in kai.get("/dashboard/").content.decode()


def test_split_rows_are_added_freely_with_names_and_roles(django_capture_on_commit_callbacks):
    mira = factories.creator(username="mira")
    work = factories.work(mira)
    rows = [("Mira", "Photographer", "mira@example.com", "40")] + [
        (f"Owner {n}", "Performer", f"owner{n}@example.com", "10") for n in range(6)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        assert propose(client_for(mira), work.pk, rows).status_code == 302
    shares = SplitShare.objects.filter(sheet__work=work, sheet__version=2)
    assert shares.count() == 7
    assert shares.get(email="owner5@example.com").name == "Owner 5"
    assert shares.get(email="mira@example.com").role == "Photographer"
    page = client_for(mira).get(f"/dashboard/works/{work.pk}/split-sheet/").content.decode()
    assert "data-split-add-row" in page and "Owner 5" in page


def test_the_navigation_shows_the_invitations_waiting(invited):
    kai = client_for(invited["kai"])
    nav = kai.get("/dashboard/works/").content.decode()
    assert 'data-nav-invitations>Invitations <span class="badge badge-pending">1<' in nav
    assert "data-nav-invitations" not in client_for(invited["mira"]).get("/dashboard/works/").content.decode()
