"""C2PA content credentials with c2pa-python: signed with a development chain, read back, trusted only
with its root, reported invalid when the file was altered, and gone when the file is re-encoded."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from media import provenance
from media.samples import audio
from media.samples.images import ensure_images

SAMPLES = Path(__file__).resolve().parents[2] / "var" / "samples"
LICENCE = {
    "grant": 41,
    "terms_url": "http://127.0.0.1:8000/api/v1/offers/9/rsl",
    "receipts": ["eyJhbGciOiJFZERTQSJ9.e30.c2ln"],
    "parents": [{"work": 9, "title": "Garden", "share_bps": 3000}],
}


@pytest.fixture(scope="module")
def chain() -> provenance.DevelopmentChain:
    return provenance.development_credentials()


@pytest.fixture(scope="module")
def garden() -> bytes:
    paths = {p.stem: p for p in ensure_images(SAMPLES / "images", packages=["mate-backgrounds"])}
    with Image.open(paths["Garden"]) as source:
        image = source.convert("RGB")
        image.thumbnail((640, 640))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        return buffer.getvalue()


@pytest.fixture(scope="module")
def song() -> bytes:
    audio.ensure_system_packages()
    return audio.render_corpus(SAMPLES / "audio", count=2, seed=7)[1].read_bytes()


def signed_image(chain, garden: bytes) -> bytes:
    with Image.open(io.BytesIO(garden)) as image:
        buffer = io.BytesIO()
        image.rotate(180).save(buffer, "JPEG", quality=88)  # a different image, made from the parent
    return provenance.sign(
        data=buffer.getvalue(),
        media_type="image/jpeg",
        title="Garden at night",
        ingredients=[provenance.Ingredient("Garden (work #9)", "image/jpeg", garden)],
        licence=LICENCE,
        credentials=chain.credentials,
        generator="image-restyle",
    )


def test_a_signed_image_reads_back_with_its_parent_licence_and_ai_marker(chain, garden):
    data = signed_image(chain, garden)
    summary = provenance.read(data, "image/jpeg", trust_anchors_pem=chain.root_pem)

    assert summary is not None
    assert summary.validation_state == "Trusted" and summary.problems == []
    assert summary.ai_generated is True
    assert summary.digital_source_type == provenance.TRAINED_ALGORITHMIC_MEDIA
    assert summary.ingredients == [{"title": "Garden (work #9)", "relationship": "parentOf"}]
    assert summary.licence == LICENCE
    assert summary.title == "Garden at night" and summary.claim_generator == provenance.CLAIM_GENERATOR
    assert summary.signer == "Tribute development content credentials"


def test_without_the_development_root_the_signature_is_valid_but_the_signer_unknown(chain, garden):
    summary = provenance.read(signed_image(chain, garden), "image/jpeg")
    assert summary is not None
    assert summary.validation_state == "Valid"
    assert any(problem.startswith("signingCredential.untrusted") for problem in summary.problems)


def test_a_manifest_from_another_root_is_not_trusted_by_ours(chain, garden):
    other = provenance.development_credentials(organisation="Someone else")
    data = signed_image(other, garden)
    summary = provenance.read(data, "image/jpeg", trust_anchors_pem=chain.root_pem)
    assert summary is not None and summary.validation_state != "Trusted"


def test_altered_pixels_invalidate_the_manifest(chain, garden):
    data = bytearray(signed_image(chain, garden))
    data[-200] ^= 0xFF  # inside the compressed image data, after the manifest
    summary = provenance.read(bytes(data), "image/jpeg", trust_anchors_pem=chain.root_pem)
    assert summary is not None and summary.validation_state == "Invalid"
    assert any("mismatch" in problem.lower() for problem in summary.problems)


def test_a_reencoded_file_carries_no_manifest(chain, garden):
    data = signed_image(chain, garden)
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=88)
    assert provenance.read(buffer.getvalue(), "image/jpeg", trust_anchors_pem=chain.root_pem) is None
    assert provenance.read(garden, "image/jpeg") is None


def test_wav_audio_carries_a_manifest_and_still_decodes_to_the_same_samples(chain, song):
    signed = provenance.sign(
        data=song,
        media_type="audio/wav",
        title="Remix",
        ingredients=[provenance.Ingredient("Song (work #3)", "audio/wav", song)],
        licence=LICENCE,
        credentials=chain.credentials,
    )
    summary = provenance.read(signed, "audio/wav", trust_anchors_pem=chain.root_pem)
    assert summary is not None and summary.validation_state == "Trusted" and summary.ai_generated
    original, _ = soundfile.read(io.BytesIO(song), dtype="int16")
    carried, _ = soundfile.read(io.BytesIO(signed), dtype="int16")
    assert np.array_equal(original, carried)
    assert len(signed) - len(song) < 20_000  # the manifest, without thumbnails, is a few kilobytes


def test_formats_c2pa_does_not_cover_are_refused_for_signing_and_read_as_none(chain, song):
    ogg = io.BytesIO()
    soundfile.write(ogg, np.zeros(8000, dtype=np.float32), 8000, format="OGG")
    assert provenance.read(ogg.getvalue(), "audio/ogg") is None
    with pytest.raises(provenance.ProvenanceError, match="audio/ogg"):
        provenance.sign(
            data=ogg.getvalue(),
            media_type="audio/ogg",
            title="x",
            ingredients=[],
            licence={},
            credentials=chain.credentials,
        )
