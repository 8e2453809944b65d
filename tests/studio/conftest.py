"""Studio fixtures: real photographs (Debian's MATE wallpapers), real music rendered from the music21
corpus, and a sung vocal (Festival), all cached under var/samples."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from accounts.models import User
from catalog.models import Offer, Work
from catalog.services import asset_upload
from catalog.tasks import fingerprint_asset
from common.money import Money
from media.samples import audio, speech
from media.samples.images import ensure_images
from studio.services import wallet_fund
from tests import factories
from tests.studio.vendor import Vendor, running_vendor

SAMPLES = Path(__file__).resolve().parents[2] / "var" / "samples"


def _jpeg(path: Path, side: int = 800) -> bytes:
    with Image.open(path) as source:
        image = source.convert("RGB")
        image.thumbnail((side, side))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        return buffer.getvalue()


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    paths = {p.stem: p for p in ensure_images(SAMPLES / "images", packages=["mate-backgrounds"])}
    return {name: _jpeg(paths[name]) for name in ("Garden", "Aqua", "Wood", "LadyBird")}


@pytest.fixture(scope="session")
def instrumental() -> bytes:
    audio.ensure_system_packages()
    return audio.render_corpus(SAMPLES / "audio", count=2, seed=7)[1].read_bytes()


@pytest.fixture(scope="session")
def vocal() -> bytes:
    speech.ensure_system_packages()
    return speech.render_song(SAMPLES / "speech", "festival-kal").read_bytes()


@dataclass
class Catalogue:
    creator: User
    fan: User
    work: Work
    offer: Offer


def publish(creator: User, *, kind: str, data: bytes, filename: str, **terms: Any) -> tuple[Work, Offer]:
    work = factories.work(creator, kind=kind, title=f"Licensed {kind}")
    asset = asset_upload(work=work, user=creator, data=data, filename=filename).asset
    fingerprint_asset(asset.pk)  # the Celery task's body
    return work, factories.offer(creator, work, **terms)


@pytest.fixture
def image_catalogue(db, photos) -> Catalogue:
    creator = factories.creator(username="mira", display_name="Mira")
    fan = factories.fan(username="kai", display_name="Kai")
    work, offer = publish(
        creator,
        kind="image",
        data=photos["Garden"],
        filename="garden.jpg",
        uses={"derivative": 0, "style": 25},
        derivative_share_bps=3000,
        licence_fee_minor=150,
        commercial_use=True,
    )
    wallet_fund(user=fan, amount=Money(1_000, "USD"), external_ref="kai-1")
    return Catalogue(creator=creator, fan=fan, work=work, offer=offer)


@pytest.fixture
def audio_catalogue(db, instrumental) -> Catalogue:
    creator = factories.creator(username="sol", display_name="Sol")
    fan = factories.fan(username="kai", display_name="Kai")
    work, offer = publish(
        creator,
        kind="audio",
        data=instrumental,
        filename="instrumental.wav",
        uses={"derivative": 0},
        derivative_share_bps=5000,
        commercial_use=True,
    )
    wallet_fund(user=fan, amount=Money(1_000, "USD"), external_ref="kai-1")
    return Catalogue(creator=creator, fan=fan, work=work, offer=offer)


@pytest.fixture
def vendor_service(photos) -> Iterator[Vendor]:
    with running_vendor(photos["Garden"]) as state:
        yield state


@pytest.fixture
def external_settings(settings, vendor_service) -> Callable[..., None]:
    def configure(**overrides: Any) -> None:
        entry = {
            "name": "acme-image",
            "title": "Acme Imagine",
            "url": vendor_service.url,
            "parent_kind": "image",
            "output_kind": "image",
            "timeout_s": 5,
            "max_bytes": 2_000_000,
        }
        entry.update(overrides)
        settings.STUDIO_EXTERNAL_GENERATORS = json.dumps([entry])

    configure()
    return configure
