"""A claim shows its respondent the one file of the claimed work that matched, never the work's others."""

from __future__ import annotations

import pytest
from django.test import Client

from catalog.models import Claim
from catalog.services import asset_upload
from catalog.tasks import fingerprint_asset
from tests import factories
from tests.dashboard.conftest import reencoded

pytestmark = pytest.mark.django_db


def test_the_respondent_of_a_claim_on_a_draft_sees_only_the_matched_file(photo) -> None:
    # given a creator's unpublished work whose photograph a copier re-uploaded, opening a claim
    owner = factories.creator()
    draft = factories.work(owner, title="Garden")
    matched = asset_upload(work=draft, user=owner, data=photo, filename="garden.jpg").asset
    fingerprint_asset(matched.pk)
    copier = factories.creator()
    copy = factories.work(copier, title="Mine")
    fingerprint_asset(asset_upload(work=copy, user=copier, data=reencoded(photo), filename="c.jpg").asset.pk)
    claim = Claim.objects.get(work=draft)
    # and a file the owner adds to the draft after the claim
    later = asset_upload(work=draft, user=owner, data=factories.png_bytes(), filename="sketch.png").asset
    client = Client()
    client.force_login(copier)

    # when the copier asks for the draft's files
    seen_matched = client.get(f"/dashboard/assets/{matched.pk}/file/")
    seen_later = client.get(f"/dashboard/assets/{later.pk}/file/")
    detail = client.get(f"/dashboard/claims/{claim.pk}/").content.decode()
    seen_matched.close()

    # then only the matched file answers; the later file is as missing as a wrong id
    assert claim.matched_asset_id == matched.pk
    assert seen_matched.status_code == 200
    assert seen_later.status_code == 404
    assert f"/dashboard/assets/{later.pk}/file/" not in detail
    assert f"/dashboard/assets/{matched.pk}/file/" in detail
