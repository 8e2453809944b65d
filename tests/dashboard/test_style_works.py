"""A style (or a voice) is a collection of works: its page shows the member works with their files, its
manager adds and removes them, and the works list shows what it is made of, not "0 files"."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from catalog.models import SplitSheet
from catalog.services import asset_upload, split_sheet_propose
from tests import factories

pytestmark = pytest.mark.django_db


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(response) -> str:
    return response.content.decode()


@pytest.fixture
def style():
    creator = factories.creator(username="mira", display_name="Mira")
    photos = []
    for number, color in enumerate([(200, 30, 90), (20, 130, 90), (20, 30, 190)], start=1):
        photo = factories.work(creator, title=f"Photo {number}")
        asset_upload(
            work=photo, user=creator, data=factories.png_bytes(color=color), filename=f"p{number}.png"
        )
        photos.append(photo)
    style = factories.work(creator, kind="style", title="Dusk palette")
    return {"creator": creator, "photos": photos, "style": style}


def test_the_manager_adds_three_photos_and_the_style_page_shows_three_thumbnails(style):
    creator, photos, work = style["creator"], style["photos"], style["style"]
    client = client_for(creator)
    empty = page(client.get(f"/dashboard/works/{work.pk}/"))
    assert "No member works yet." in empty and "0 files" not in empty
    for photo in photos:
        assert f'name="member" value="{photo.pk}"' in empty

    response = client.post(
        f"/dashboard/works/{work.pk}/members/", {"member": [p.pk for p in photos]}, follow=True
    )

    body = page(response)
    assert "now has 3 member works" in body
    assert sorted(work.members.values_list("pk", flat=True)) == sorted(p.pk for p in photos)
    members = body.split("data-members>")[1].split("</ul>")[0]
    assert members.count('<img class="preview"') == 3
    assert "data-member-count>3 works<" in body
    listing = page(client.get("/dashboard/works/?kind=style"))
    assert "3 works · 0 files" in listing and listing.count('class="thumbs"') == 1


def test_removing_a_member_keeps_the_others(style):
    creator, photos, work = style["creator"], style["photos"], style["style"]
    client = client_for(creator)
    client.post(f"/dashboard/works/{work.pk}/members/", {"member": [p.pk for p in photos]})

    client.post(f"/dashboard/works/{work.pk}/members/", {"member": [photos[0].pk, photos[2].pk]})

    assert sorted(work.members.values_list("pk", flat=True)) == [photos[0].pk, photos[2].pk]


def test_members_that_are_not_the_managers_own_are_refused_and_nothing_changes(style):
    creator, photos, work = style["creator"], style["photos"], style["style"]
    client = client_for(creator)
    client.post(f"/dashboard/works/{work.pk}/members/", {"member": [photos[0].pk]})
    foreign = factories.work(factories.creator(username="other"), title="Not hers")

    refused = client.post(
        f"/dashboard/works/{work.pk}/members/", {"member": [photos[1].pk, foreign.pk]}, follow=True
    )
    junk = client.post(f"/dashboard/works/{work.pk}/members/", {"member": ["1; drop"]}, follow=True)

    assert "Works not found among your works" in page(refused) and "Choose works from the list." in page(junk)
    assert list(work.members.values_list("pk", flat=True)) == [photos[0].pk]


def test_only_the_manager_may_change_members_and_a_co_owner_sees_them_without_a_form(style):
    creator, photos, work = style["creator"], style["photos"], style["style"]
    client_for(creator).post(f"/dashboard/works/{work.pk}/members/", {"member": [photos[0].pk]})
    co_owner = factories.creator(username="kai", email="kai@example.com")
    sheet = split_sheet_propose(
        work=work, user=creator, shares=[(creator.email, 5000), ("kai@example.com", 5000)]
    )
    # As if Kai followed the emailed link (its token is only in the email).
    sheet.shares.filter(email="kai@example.com").update(user=co_owner, accepted_at=sheet.created_at)
    SplitSheet.objects.filter(work=work, status="active").update(status="superseded")
    SplitSheet.objects.filter(pk=sheet.pk).update(status="active")

    assert (
        client_for(co_owner).post(f"/dashboard/works/{work.pk}/members/", {"member": []}).status_code == 404
    )
    assert (
        client_for(factories.fan()).post(f"/dashboard/works/{work.pk}/members/", {"member": []}).status_code
        == 404
    )
    body = page(client_for(co_owner).get(f"/dashboard/works/{work.pk}/"))
    assert "Photo 1" in body and "Save member works" not in body
    # The co-owner of the style is not an owner of the photo: its title is listed, its file is not.
    assert f"/dashboard/assets/{photos[0].assets.get().pk}/file/" not in body
    assert list(work.members.values_list("pk", flat=True)) == [photos[0].pk]
