"""The demo's dataset step runs on the story's people and photographs and prints the sale's split."""

from __future__ import annotations

import pytest

from catalog import fingerprinting
from catalog.services import asset_upload, work_create
from datasets.models import DatasetLicence, SaleShare
from demo.dataset_step import dataset_sale
from demo.story import Story
from tests import factories
from tests.datasets.conftest import SAMPLES, funded

pytestmark = pytest.mark.django_db


def test_the_demo_sells_a_dataset_of_the_creators_photographs_and_prints_the_split(photos):
    lines: list[str] = []
    story = Story(say=lines.append, samples_dir=SAMPLES)
    for name in ("mira", "sol", "ade"):
        story.people[name] = factories.creator(username=name, display_name=name.title())
    story.people["acme"] = factories.vendor(username="acme", organisation_name="Acme AI")
    funded(story.people["acme"], 5_000)
    for index, name in enumerate(("Garden", "LadyBird", "Wood"), start=1):
        work = work_create(user=story.people["mira"], title=f"Northern light #{index}", kind="image")
        asset = asset_upload(
            work=work, user=story.people["mira"], data=photos[name], filename=f"{name}.jpg"
        ).asset
        fingerprinting.asset_fingerprint(asset_id=asset.pk)
        story.works[f"photo{index}"] = work

    dataset_sale(story)

    text = "\n".join(lines)
    licence = DatasetLicence.objects.get()
    assert licence.price_minor == 2_500 and licence.snapshot.item_count == 5
    assert "Ade adds “Flower (thumbnail)”: left out (The image is" in text
    # 10% to the curator, the remaining 2,250 over five photographs.
    assert "2.50 USD to the curator, Sol" in text
    assert text.count("4.50 USD to “") == 5
    assert sum(SaleShare.objects.filter(licence=licence).values_list("amount_minor", flat=True)) == 2_500
