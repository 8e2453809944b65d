"""Snapshots are immutable; opting out and do-not-train take items out of the future, not the past."""

from __future__ import annotations

import pytest

from catalog.consent import consent_withdraw
from common.problems import ApiError
from datasets.models import DatasetItem, DatasetLicence, ItemStatus, SnapshotItem, SnapshotOptOut
from datasets.services import contributing, opt_outs, sales, snapshots
from tests import factories
from tests.datasets.conftest import dataset, funded, publish, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(photos):
    mira, sol, curator, vendor = (
        factories.creator(),
        factories.creator(),
        factories.creator(),
        factories.vendor(),
    )
    garden = register(mira, photos["Garden"], title="Garden")
    wood = register(sol, photos["Wood"], title="Wood")
    aqua = register(sol, photos["Aqua"], title="Aqua")
    photo_set = dataset(curator, price_minor=9_000)
    for owner, work in ((mira, garden), (sol, wood), (sol, aqua)):
        contributing.item_contribute(dataset=photo_set, user=owner, work=work)
    return {
        "mira": mira,
        "sol": sol,
        "curator": curator,
        "vendor": vendor,
        "garden": garden,
        "wood": wood,
        "aqua": aqua,
        "dataset": photo_set,
    }


def test_a_snapshot_freezes_each_items_hash_owner_and_terms_version(world):
    snapshot = snapshots.snapshot_create(dataset=world["dataset"], user=world["curator"])

    entries = list(SnapshotItem.objects.filter(snapshot=snapshot).order_by("position"))
    assert [e.work_id for e in entries] == [world["garden"].pk, world["wood"].pk, world["aqua"].pk]
    assert [e.blob_id for e in entries] == [
        world["garden"].assets.get().blob_id,
        world["wood"].assets.get().blob_id,
        world["aqua"].assets.get().blob_id,
    ]
    assert entries[0].owners == [{"name": world["mira"].public_name, "share_bps": 10_000}]
    assert entries[0].attribution.startswith(f"“Garden” by {world['mira'].public_name}")
    assert (snapshot.number, snapshot.item_count, snapshot.price_minor, snapshot.terms_version) == (
        1,
        3,
        9_000,
        1,
    )
    rows = [(e.position, e.blob_id, e.work_id, e.offer_version, e.weight) for e in entries]
    assert snapshot.items_sha256 == snapshots.items_digest(rows)


def test_an_opt_out_leaves_a_sold_snapshot_intact_and_excludes_the_work_from_the_next(world):
    first = snapshots.snapshot_create(dataset=world["dataset"], user=world["curator"])
    organisation = funded(world["vendor"], 20_000)
    sales.licence_purchase(snapshot=first, organisation=organisation, user=world["vendor"])
    wood_item = DatasetItem.objects.get(work=world["wood"])
    before = list(SnapshotItem.objects.filter(snapshot=first).values_list("position", "blob_id", "work_id"))

    opt_outs.item_opt_out(item=wood_item, user=world["sol"])
    second = snapshots.snapshot_create(dataset=world["dataset"], user=world["curator"])

    assert (
        list(SnapshotItem.objects.filter(snapshot=first).values_list("position", "blob_id", "work_id"))
        == before
    )
    assert list(
        SnapshotOptOut.objects.filter(snapshot=first).values_list("entry__work_id", "reason_code")
    ) == [(world["wood"].pk, "opted_out")]
    assert set(SnapshotItem.objects.filter(snapshot=second).values_list("work_id", flat=True)) == {
        world["garden"].pk,
        world["aqua"].pk,
    }
    assert not SnapshotOptOut.objects.filter(snapshot=second).exists()
    assert first.licences.count() == 1
    # The old snapshot, with an opt-out recorded, is no longer sold.
    late_vendor = factories.vendor(organisation_name="Late AI")
    late = funded(late_vendor, 20_000, "late-top-up")
    with pytest.raises(ApiError) as refused:
        sales.licence_purchase(snapshot=first, organisation=late, user=late_vendor)
    assert refused.value.problem_code == "snapshot_superseded"
    assert not DatasetLicence.objects.filter(organisation=late).exists()


def test_only_the_latest_clean_snapshot_is_for_sale(world):
    first = snapshots.snapshot_create(dataset=world["dataset"], user=world["curator"])
    opt_outs.item_opt_out(item=DatasetItem.objects.get(work=world["aqua"]), user=world["sol"])

    assert sales.snapshot_sale_problem(first) == (
        "snapshot_stale",
        "Items of this snapshot were opted out; the curator must cut a new snapshot.",
    )
    second = snapshots.snapshot_create(dataset=world["dataset"], user=world["curator"])
    problem = sales.snapshot_sale_problem(first)
    assert problem is not None and problem[0] == "snapshot_superseded"
    assert sales.snapshot_sale_problem(second) is None


def test_do_not_train_on_a_creator_excludes_their_works_everywhere_and_blocks_joining(world, photos):
    other_set = dataset(factories.creator(), price_minor=5_000)
    contributing.item_contribute(dataset=other_set, user=world["sol"], work=world["wood"])
    first = snapshots.snapshot_create(dataset=world["dataset"], user=world["curator"])

    opt_outs.training_opt_out_set(user=world["sol"])

    assert set(DatasetItem.objects.filter(contributor=world["sol"]).values_list("status", "reason_code")) == {
        (ItemStatus.OPTED_OUT, "do_not_train")
    }
    assert set(SnapshotOptOut.objects.filter(snapshot=first).values_list("entry__work_id", flat=True)) == {
        world["wood"].pk,
        world["aqua"].pk,
    }
    fresh = register(world["sol"], photos["Dune"], title="Dune")
    with pytest.raises(ApiError) as refused:
        contributing.item_contribute(dataset=world["dataset"], user=world["sol"], work=fresh)
    assert refused.value.problem_code == "do_not_train"
    second = snapshots.snapshot_create(dataset=world["dataset"], user=world["curator"])
    assert list(SnapshotItem.objects.filter(snapshot=second).values_list("work_id", flat=True)) == [
        world["garden"].pk
    ]


def test_a_work_whose_training_consent_is_withdrawn_is_left_out_of_the_next_snapshot_and_cannot_join(
    world, photos
):
    consent_withdraw(work=world["garden"], user=world["mira"], use_class="ai-train")

    snapshot = snapshots.snapshot_create(dataset=world["dataset"], user=world["curator"])

    assert world["garden"].pk not in set(
        SnapshotItem.objects.filter(snapshot=snapshot).values_list("work_id", flat=True)
    )
    assert DatasetItem.objects.get(work=world["garden"]).reason_code == "consent_withdrawn"
    elsewhere = dataset(factories.creator(), price_minor=5_000)
    with pytest.raises(ApiError) as refused:
        contributing.item_contribute(dataset=elsewhere, user=world["mira"], work=world["garden"])
    assert refused.value.problem_code == "consent_withdrawn"


def test_a_member_who_tightens_their_terms_is_left_out_of_the_next_snapshot_with_the_reason(world):
    publish(world["mira"], world["garden"], territories=["FR"])

    snapshot = snapshots.snapshot_create(dataset=world["dataset"], user=world["curator"])

    garden_item = DatasetItem.objects.get(work=world["garden"])
    assert (garden_item.status, garden_item.reason_code) == (ItemStatus.EXCLUDED, "territory_wider")
    assert world["garden"].pk not in set(
        SnapshotItem.objects.filter(snapshot=snapshot).values_list("work_id", flat=True)
    )


def test_a_snapshot_that_would_pay_an_item_below_its_terms_leaves_that_item_out(world):
    # 9,000 over three items pays 3,000 each: Wood now asks 3,500 per training use.
    publish(world["sol"], world["wood"], uses={"ai-train": 3_500})

    snapshot = snapshots.snapshot_create(dataset=world["dataset"], user=world["curator"])

    wood_item = DatasetItem.objects.get(work=world["wood"])
    assert (wood_item.status, wood_item.reason_code) == (ItemStatus.EXCLUDED, "price_below_terms")
    assert snapshot.item_count == 2


def test_only_the_curator_cuts_snapshots(world):
    with pytest.raises(ApiError) as refused:
        snapshots.snapshot_create(dataset=world["dataset"], user=world["mira"])

    assert refused.value.problem_code == "dataset_not_found"
