"""Dashboard pages: creators contribute, opt out and see earnings; vendors browse, buy and download;
nobody sees or changes what is not theirs."""

from __future__ import annotations

import pytest
from django.test import Client

from datasets.models import DatasetItem, DatasetLicence, ItemStatus, TrainingOptOut
from datasets.services import contributing, sales, snapshots
from tests import factories
from tests.datasets.conftest import dataset, funded, register

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def shop(photos):
    mira, curator, vendor = factories.creator(), factories.creator(), factories.vendor()
    garden = register(mira, photos["Garden"], title="Garden")
    wood = register(mira, photos["Wood"], title="Wood")
    photo_set = dataset(curator, price_minor=2_500)
    return {
        "mira": mira,
        "curator": curator,
        "vendor": vendor,
        "garden": garden,
        "wood": wood,
        "dataset": photo_set,
    }


def test_a_creator_contributes_from_the_page_and_sees_the_item_and_its_earnings(shop):
    page = _client(shop["mira"])
    url = f"/dashboard/datasets/{shop['dataset'].pk}/"

    before = page.get(url)
    posted = page.post(f"{url}contribute/", {"work": shop["garden"].pk}, follow=True)

    assert before.status_code == 200 and b"Contribute a work" in before.content
    assert f'<option value="{shop["garden"].pk}">Garden</option>'.encode() in before.content
    assert posted.status_code == 200 and "“Garden”: 1 file(s) included." in posted.content.decode()
    assert DatasetItem.objects.get(work=shop["garden"]).status == ItemStatus.INCLUDED
    listing = page.get("/dashboard/datasets/")
    assert f'data-contribution="{shop["dataset"].pk}"'.encode() in listing.content
    assert b'src="/static/js/datasets.js"' in listing.content
    assert b"<script>" not in listing.content  # page code lives in static files


def test_a_creator_opts_an_item_out_and_another_creator_cannot(shop):
    (item,) = contributing.item_contribute(dataset=shop["dataset"], user=shop["mira"], work=shop["garden"])
    stranger = _client(factories.creator())

    refused = stranger.post(f"/dashboard/datasets/items/{item.pk}/opt-out/")
    assert refused.status_code == 404
    assert DatasetItem.objects.get(pk=item.pk).status == ItemStatus.INCLUDED

    done = _client(shop["mira"]).post(f"/dashboard/datasets/items/{item.pk}/opt-out/")
    assert done.status_code == 302
    assert DatasetItem.objects.get(pk=item.pk).status == ItemStatus.OPTED_OUT


def test_the_do_not_train_switch_takes_every_work_out(shop):
    contributing.item_contribute(dataset=shop["dataset"], user=shop["mira"], work=shop["garden"])

    _client(shop["mira"]).post("/dashboard/datasets/do-not-train/", {"set": "1"})

    assert TrainingOptOut.objects.filter(user=shop["mira"]).exists()
    assert DatasetItem.objects.get(work=shop["garden"]).reason_code == "do_not_train"


def test_a_vendor_buys_from_the_page_and_downloads_the_manifest(shop):
    contributing.item_contribute(dataset=shop["dataset"], user=shop["mira"], work=shop["garden"])
    snapshots.snapshot_create(dataset=shop["dataset"], user=shop["curator"])
    funded(shop["vendor"], 5_000)
    vendor = _client(shop["vendor"])
    detail = vendor.get(f"/dashboard/datasets/{shop['dataset'].pk}/")
    snapshot = shop["dataset"].snapshots.get()

    bought = vendor.post(f"/dashboard/datasets/snapshots/{snapshot.pk}/buy/", follow=True)

    assert b"Buy training licence" in detail.content
    licence = DatasetLicence.objects.get()
    assert bought.status_code == 200 and licence.receipt.encode() in bought.content
    link = next(line for line in bought.content.decode().splitlines() if 'data-part="manifest"' in line)
    href = link.split('href="', 1)[1].split('"', 1)[0]
    manifest = vendor.get(href)
    assert manifest.status_code == 200 and manifest["Content-Type"] == "application/jsonl"
    assert b'"title": "Garden"' in manifest.content


def test_another_vendor_sees_neither_the_licence_nor_its_downloads(shop):
    contributing.item_contribute(dataset=shop["dataset"], user=shop["mira"], work=shop["garden"])
    snapshot = snapshots.snapshot_create(dataset=shop["dataset"], user=shop["curator"])
    organisation = funded(shop["vendor"], 5_000)
    licence = sales.licence_purchase(
        snapshot=snapshot, organisation=organisation, user=shop["vendor"]
    ).licence
    owner_page = _client(shop["vendor"]).get(f"/dashboard/datasets/licences/{licence.pk}/").content.decode()
    href = (
        next(line for line in owner_page.splitlines() if 'data-part="manifest"' in line)
        .split('href="')[1]
        .split('"')[0]
    )
    rival = _client(factories.vendor(organisation_name="Rival AI"))

    assert rival.get(f"/dashboard/datasets/licences/{licence.pk}/").status_code == 404
    refused = rival.get(href)
    assert refused.status_code == 403 and b"issued to another organisation" in refused.content


def test_a_short_balance_sends_the_vendor_to_top_up_and_buys_nothing(shop):
    contributing.item_contribute(dataset=shop["dataset"], user=shop["mira"], work=shop["garden"])
    snapshot = snapshots.snapshot_create(dataset=shop["dataset"], user=shop["curator"])
    funded(shop["vendor"], 100)

    answer = _client(shop["vendor"]).post(f"/dashboard/datasets/snapshots/{snapshot.pk}/buy/")

    assert answer.status_code == 302 and answer["Location"] == "/dashboard/balance/"
    assert not DatasetLicence.objects.exists()


def test_a_fan_is_told_datasets_are_not_for_them_and_a_creator_cannot_buy(shop):
    assert _client(factories.fan()).get("/dashboard/datasets/").status_code == 403
    contributing.item_contribute(dataset=shop["dataset"], user=shop["mira"], work=shop["garden"])
    snapshot = snapshots.snapshot_create(dataset=shop["dataset"], user=shop["curator"])
    assert _client(shop["mira"]).post(f"/dashboard/datasets/snapshots/{snapshot.pk}/buy/").status_code == 403


def test_a_creator_creates_a_dataset_and_only_its_curator_cuts_snapshots(shop):
    page = _client(shop["mira"])

    created = page.post(
        "/dashboard/datasets/new/",
        {
            "title": "Mira's set",
            "kind": "image",
            "price_minor": "1000",
            "currency": "USD",
            "pricing": "per_snapshot",
            "weighting": "items",
            "curator_share_bps": "500",
            "commercial_use": "on",
        },
    )
    contributing.item_contribute(dataset=shop["dataset"], user=shop["mira"], work=shop["garden"])
    not_curator = page.post(f"/dashboard/datasets/{shop['dataset'].pk}/snapshots/")

    assert created.status_code == 302
    assert page.get(created["Location"]).status_code == 200
    assert not_curator.status_code == 404
    assert not shop["dataset"].snapshots.exists()
