"""The claim check of a registration is bounded: a long track is checked in a bounded number of audio
windows, and the check stops at the first window holding a claimable match. Real music rendered from the
music21 corpus, registered through the upload task's body."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile

from catalog.models import Claim
from catalog.services import asset_upload
from catalog.tasks import fingerprint_asset
from matching import services as matching_services
from media.fingerprint.audio_index import AudioIndex
from media.samples.audio import render_corpus
from tests import factories
from tests.media.sounds import with_noise

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).resolve().parents[2] / "var" / "samples"


@pytest.fixture(scope="module")
def pieces() -> list[tuple[np.ndarray, int]]:
    out = []
    for path in render_corpus(SAMPLES / "audio", count=2, seed=11):
        samples, rate = soundfile.read(path, dtype="float32")
        out.append((samples if samples.ndim == 1 else samples.mean(axis=1), rate))
    return out


def _flac(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="FLAC")
    return out.getvalue()


def _register(owner, data: bytes, title: str):
    work = factories.work(owner, kind="audio", title=title)
    asset = asset_upload(work=work, user=owner, data=data, filename=f"{title}.flac").asset
    fingerprint_asset(asset.pk)  # the Celery task's body, run here
    return work, asset


@pytest.fixture
def audio_queries(monkeypatch) -> list[float]:
    """The duration of every audio query the index answers, in order (a seam, not a clock)."""
    durations: list[float] = []
    query = AudioIndex.query

    def counted(self, fingerprint, *args, **kwargs):
        durations.append(fingerprint.duration_s)
        return query(self, fingerprint, *args, **kwargs)

    monkeypatch.setattr(AudioIndex, "query", counted)
    return durations


def _long(samples: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    return np.tile(samples, int(np.ceil(seconds * rate / samples.size)))[: round(seconds * rate)]


def test_a_long_new_track_is_checked_in_a_bounded_number_of_windows(pieces, audio_queries):
    (first, rate), _ = pieces
    composer, uploader = factories.creator(), factories.creator()
    _register(composer, _flac(first, rate), "Registered")
    audio_queries.clear()

    # Ten minutes of music nobody registered (the other piece, repeated): every window is queried, no more.
    _, other = pieces
    _register(uploader, _flac(_long(other[0], other[1], 600.0), other[1]), "Long and new")

    assert len(audio_queries) == matching_services.CLAIM_MAX_WINDOWS
    assert all(d <= matching_services.CLAIM_WINDOW_S + 0.1 for d in audio_queries)
    assert not Claim.objects.exists()


def test_the_check_stops_at_the_first_window_with_a_claimable_match(pieces, audio_queries):
    (first, rate), (second, second_rate) = pieces
    composer, uploader = factories.creator(), factories.creator()
    original, _ = _register(composer, _flac(first, rate), "Registered")
    audio_queries.clear()

    # A noisy copy of the registered piece, then minutes of other music: found in the first window.
    assert second_rate == rate
    tail = _long(second, rate, 300.0)
    long_copy = np.concatenate([with_noise(first, 20.0, seed=5), tail])
    _, asset = _register(uploader, _flac(long_copy, rate), "Copy and more")

    assert len(audio_queries) == 1
    claim = Claim.objects.get()
    assert (claim.work, claim.subject_asset, claim.match_kind) == (original, asset, "audio")
    assert claim.confidence >= 0.9


def test_a_copy_of_a_registered_track_still_opens_its_claim(pieces):
    (first, rate), _ = pieces
    composer, uploader = factories.creator(), factories.creator()
    original, _ = _register(composer, _flac(first, rate), "Registered")
    other, _ = _register(uploader, _flac(_long(pieces[1][0], pieces[1][1], 30.0), pieces[1][1]), "Other")

    _, asset = _register(uploader, _flac(with_noise(first, 15.0, seed=9), rate), "Copy")

    [claim] = Claim.objects.all()
    assert (claim.work, claim.subject_asset) == (original, asset)
    assert claim.work != other


def test_the_same_bytes_registered_by_someone_else_open_a_claim(pieces):
    (first, rate), _ = pieces
    composer, uploader = factories.creator(), factories.creator()
    data = _flac(first, rate)
    original, _ = _register(composer, data, "Registered")

    _, asset = _register(uploader, data, "Same file")

    [claim] = Claim.objects.all()
    assert (claim.work, claim.subject_asset, claim.match_kind) == (original, asset, "audio")
