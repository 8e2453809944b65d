"""Curation on real photographs: who may join, near-duplicates, quality floors, foreign media."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from django.core import mail
from django.utils import timezone
from PIL import Image, ImageOps

from catalog.services import grant_create
from common.problems import ApiError
from datasets import quality
from datasets.models import DatasetItem, DatasetNotice, ItemStatus
from datasets.services import contributing
from datasets.terms import DatasetTerms, MemberTerms, looser_terms, price_is_looser
from tests import factories
from tests.datasets.conftest import SAMPLES, dataset, jpeg, register

pytestmark = pytest.mark.django_db


def test_a_work_whose_terms_are_stricter_than_the_datasets_cannot_join(photos):
    mira = factories.creator()
    curator = factories.creator()
    only_in_france = register(mira, photos["Garden"], title="Garden", territories=["FR"])
    worldwide = dataset(curator)

    with pytest.raises(ApiError) as refused:
        contributing.item_contribute(dataset=worldwide, user=mira, work=only_in_france)

    assert refused.value.problem_code == "territory_wider"
    assert refused.value.status_code == 403
    assert DatasetItem.objects.count() == 0


def test_a_work_whose_terms_do_not_allow_training_cannot_join(photos):
    mira = factories.creator()
    no_training = register(mira, photos["Garden"], title="Garden", uses={"index": 0})

    with pytest.raises(ApiError) as refused:
        contributing.item_contribute(dataset=dataset(factories.creator()), user=mira, work=no_training)

    assert refused.value.problem_code == "ai_train_not_allowed"
    assert DatasetItem.objects.count() == 0


def test_a_dataset_price_that_undercuts_the_works_own_training_price_is_refused(photos):
    mira = factories.creator()
    # 10,000 per snapshot less a 50% curator share leaves 5,000 for one item: below a 6,000 floor.
    dear = register(mira, photos["Garden"], title="Garden", uses={"ai-train": 5_000}, licence_fee_minor=1_000)
    cheap = dataset(factories.creator(), curator_share_bps=5_000)

    with pytest.raises(ApiError) as refused:
        contributing.item_contribute(dataset=cheap, user=mira, work=dear)

    assert refused.value.problem_code == "price_below_terms"
    assert DatasetItem.objects.count() == 0


def _terms(**changes):
    base: dict[str, Any] = {
        "uses": ["ai-train"],
        "currency": "USD",
        "commercial_use": False,
        "attribution_required": True,
        "territories": [],
        "expires_at": None,
        "curator_share_bps": 0,
    }
    base.update(changes)
    return DatasetTerms(**base)


def _member(**changes):
    base: dict[str, Any] = {
        "uses": {"ai-train": 5},
        "currency": "USD",
        "commercial_use": True,
        "attribution_required": True,
        "territories": [],
        "expires_at": None,
        "licence_fee_minor": 0,
    }
    base.update(changes)
    return MemberTerms(**base)


@pytest.mark.parametrize(
    ("dataset_terms", "member_terms", "code"),
    [
        ({"uses": ["ai-train", "style"]}, {}, "use_not_allowed"),
        ({"commercial_use": True}, {"commercial_use": False}, "commercial_not_allowed"),
        ({"attribution_required": False}, {}, "attribution_required"),
        ({}, {"territories": ["DE", "FR"]}, "territory_wider"),
        ({"territories": ["DE", "US"]}, {"territories": ["DE", "FR"]}, "territory_wider"),
        ({}, {"expires_at": "soon"}, "expires_later"),
        ({"expires_at": "late"}, {"expires_at": "soon"}, "expires_later"),
        ({"currency": "EUR"}, {}, "currency_mismatch"),
        ({}, {"uses": {"index": 0}}, "ai_train_not_allowed"),
    ],
)
def test_each_way_of_being_looser_is_named(dataset_terms, member_terms, code):
    soon, late = timezone.now() + timedelta(days=30), timezone.now() + timedelta(days=90)
    moments = {"soon": soon, "late": late}
    for terms in (dataset_terms, member_terms):
        if "expires_at" in terms:
            terms["expires_at"] = moments[terms["expires_at"]]

    found = looser_terms(_terms(**dataset_terms), _member(**member_terms))

    assert [item.code for item in found] == [code]


def test_terms_as_strict_as_the_members_are_not_looser():
    soon = timezone.now() + timedelta(days=30)
    strict = _terms(territories=["FR"], expires_at=soon - timedelta(days=1), commercial_use=False)
    member = _member(territories=["DE", "FR"], expires_at=soon, commercial_use=False)

    assert looser_terms(strict, member) == []


def test_the_price_floor_is_compared_exactly():
    # 3 items share 10,000 after a 1,000 bps curator share: each earns exactly 3,000.
    assert not price_is_looser(
        price_minor=10_000, curator_share_bps=1_000, weight=1, total_weight=3, floor_minor=3_000
    )
    assert price_is_looser(
        price_minor=10_000, curator_share_bps=1_000, weight=1, total_weight=3, floor_minor=3_001
    )


def test_near_duplicates_collapse_to_one_item_and_both_owners_are_told(photos):
    mira, sol, curator = factories.creator(), factories.creator(), factories.creator()
    original = register(mira, photos["Garden"], title="Garden")
    # Sol licensed Mira's photo and registers a smaller, re-encoded, slightly cropped copy of it.
    grant_create(offer=original.offers.get(), user=sol)
    with Image.open(io.BytesIO(photos["Garden"])) as image:
        width, height = image.size
        cropped = image.crop((width // 20, height // 20, width, height))
        copy_bytes = jpeg(cropped, longest=480, quality=70)
    copy = register(sol, copy_bytes, title="Garden, my version")
    other = register(sol, photos["Wood"], title="Wood")
    photos_set = dataset(curator)

    kept = contributing.item_contribute(dataset=photos_set, user=mira, work=original)
    mail.outbox.clear()
    with pytest.MonkeyPatch.context():
        from django.test import TestCase

        with TestCase.captureOnCommitCallbacks(execute=True):
            duplicate = contributing.item_contribute(dataset=photos_set, user=sol, work=copy)
    unrelated = contributing.item_contribute(dataset=photos_set, user=sol, work=other)

    assert [item.status for item in kept] == [ItemStatus.INCLUDED]
    assert [(item.status, item.reason_code, item.duplicate_of_id) for item in duplicate] == [
        (ItemStatus.EXCLUDED, "near_duplicate", kept[0].pk)
    ]
    assert [item.status for item in unrelated] == [ItemStatus.INCLUDED]
    told = DatasetNotice.objects.filter(kind="near_duplicate", item=duplicate[0])
    assert sorted(told.values_list("user_id", flat=True)) == sorted([mira.pk, sol.pk])
    assert sorted(address for message in mail.outbox for address in message.to) == sorted(
        [mira.email, sol.email]
    )


def test_media_matching_someone_elses_registered_work_without_a_grant_is_refused(photos):
    mira, copier = factories.creator(), factories.creator()
    register(mira, photos["LadyBird"], title="Ladybird")
    with Image.open(io.BytesIO(photos["LadyBird"])) as image:
        mirrored = jpeg(ImageOps.mirror(image), longest=600)
    copied = register(copier, mirrored, title="Bug on a leaf")

    with pytest.raises(ApiError) as refused:
        contributing.item_contribute(dataset=dataset(factories.creator()), user=copier, work=copied)

    assert refused.value.problem_code == "foreign_match"
    assert DatasetItem.objects.count() == 0


def test_an_image_below_the_resolution_floor_is_left_out_with_the_reason(photos):
    mira = factories.creator()
    with Image.open(io.BytesIO(photos["Aqua"])) as image:
        small = jpeg(image, longest=200)
    tiny = register(mira, small, title="Aqua, thumbnail")

    items = contributing.item_contribute(dataset=dataset(factories.creator()), user=mira, work=tiny)

    assert [(item.status, item.reason_code) for item in items] == [(ItemStatus.EXCLUDED, "below_resolution")]
    assert "200 x" in items[0].reason and "floor is 256 x 256" in items[0].reason


@pytest.fixture(scope="module")
def speech() -> bytes:
    from media.samples import speech as speech_samples

    rendered = speech_samples.render_speech(SAMPLES / "speech", ["festival-kal"], [0])
    return Path(rendered["festival-kal"][0]).read_bytes()


def _wav(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="FLOAT")  # no rounding of quiet samples
    return buffer.getvalue()


def test_audio_floors_name_duration_loudness_and_corruption(speech):
    samples, rate = soundfile.read(io.BytesIO(speech), dtype="float32")
    floors = quality.Floors(min_duration_ms=1000, min_loudness_dbfs=-45)
    whole = quality.check(speech, floors)
    short = quality.check(_wav(samples[: rate // 2], rate), floors)
    quiet = quality.check(_wav(samples * 10 ** (-50 / 20), rate), floors)
    corrupt = quality.check(speech[:40] + bytes(64), floors)

    assert whole.passed and whole.loudness_dbfs is not None and -45 < whole.loudness_dbfs < 0
    assert short.code == "below_duration"
    assert quiet.code == "below_loudness"
    assert quiet.loudness_dbfs == pytest.approx(whole.loudness_dbfs - 50, abs=0.01)
    assert corrupt.code == "corrupt_media"


def test_a_truncated_image_is_reported_corrupt(photos):
    verdict = quality.check(photos["Dune"][: len(photos["Dune"]) // 2], quality.Floors())

    assert verdict.code == "corrupt_media"
    assert "damaged or truncated" in verdict.reason
