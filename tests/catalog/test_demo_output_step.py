"""The demo's output step: Acme registers a mirrored, cropped copy of Mira's published photograph and the
trace opens a claim for her (a draft would be hidden, as trace hides it), and she monetizes it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from catalog.models import Claim
from catalog.services import asset_upload, work_create
from catalog.tasks import fingerprint_asset
from demo.access_step import output_claim
from demo.story import Story
from media.samples.images import ensure_images
from tests import factories

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).resolve().parents[2] / "var" / "samples"


def test_the_demo_opens_a_claim_for_the_photograph_acme_copied(tmp_path) -> None:
    lines: list[str] = []
    story = Story(say=lines.append, samples_dir=tmp_path)
    mira = story.people["mira"] = factories.creator(username="mira", display_name="Mira")
    story.people["acme"] = factories.vendor(username="acme", organisation_name="Acme AI")
    garden = next(
        p for p in ensure_images(SAMPLES / "images", packages=["mate-backgrounds"]) if p.stem == "Garden"
    )
    with Image.open(garden) as source:
        image = source.convert("RGB")
    image.thumbnail((1200, 1200))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    photo = work_create(user=mira, title="Northern light #1", kind="image")
    fingerprint_asset(asset_upload(work=photo, user=mira, data=buffer.getvalue(), filename="g.jpg").asset.pk)
    story.works["photo1"] = photo

    output_claim(story)

    text = "\n".join(lines)
    assert "the trace finds “Northern light #1”" in text and "mirrored True" in text
    claim = Claim.objects.get()
    assert (claim.work_id, claim.respondent_id) == (photo.pk, story.people["acme"].pk)
    assert f"claim #{claim.pk} opens for Mira" in text
    # Acme has no balance here: the charge Mira names is owed until it can pay
    assert "Mira monetizes it: Acme owes 2.50 USD for the ai-generate use, owed until its balance" in text
    assert (claim.decision, claim.charge, claim.charge_minor) == ("monetize", "owed", 250)
