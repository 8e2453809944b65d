"""Speaker embedding on real recorded voices (Festival voices built from real speakers' recordings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from media.errors import CorruptMedia, MediaError, MediaTooLarge, UnsupportedMedia
from media.fingerprint import voice
from media.samples import speech

SPEECH_CACHE = Path(__file__).resolve().parents[2] / "var" / "samples" / "speech"
VOICES = ("festival-kal", "festival-slt", "festival-dita")
ENROL_SENTENCE = 0
HELD_APART_SENTENCE = 2


@pytest.fixture(scope="module")
def embeddings() -> dict[str, tuple[voice.VoiceEmbedding, voice.VoiceEmbedding]]:
    speech.ensure_system_packages()
    renders = speech.render_speech(SPEECH_CACHE, VOICES, (ENROL_SENTENCE, HELD_APART_SENTENCE))
    return {
        name: (voice.embed_file(enrol), voice.embed_file(test)) for name, (enrol, test) in renders.items()
    }


def test_a_held_apart_sentence_of_the_same_speaker_scores_above_the_threshold(embeddings):
    for name in VOICES:
        enrolled, tested = embeddings[name]
        score = voice.similarity(enrolled, tested)
        assert score >= voice.same_speaker_threshold, name
        assert voice.confidence(score) > 0.5


def test_a_different_speaker_scores_below_the_threshold(embeddings):
    for enrolled_name in VOICES:
        for tested_name in VOICES:
            if enrolled_name == tested_name:
                continue
            score = voice.similarity(embeddings[enrolled_name][0], embeddings[tested_name][1])
            assert score < voice.same_speaker_threshold, (enrolled_name, tested_name)


def test_an_embedding_is_a_unit_float32_vector_tagged_with_the_algorithm(embeddings):
    embedding = embeddings["festival-kal"][0]

    assert embedding.vector.dtype == np.float32
    assert embedding.vector.shape == (voice.EMBEDDING_SIZE,)
    assert float(np.linalg.norm(embedding.vector)) == pytest.approx(1.0, abs=1e-5)
    assert embedding.algorithm == voice.ALGORITHM == "voice-resemblyzer-ge2e-v2"


def _noisy(samples: np.ndarray, snr_db: float) -> np.ndarray:
    noise = np.random.default_rng(3).normal(size=samples.shape)
    scale = np.sqrt(float(np.mean(samples**2)) / 10 ** (snr_db / 10))
    return (samples + noise * scale).astype(np.float32)


def _held_apart_samples(name: str) -> tuple[np.ndarray, int]:
    import soundfile

    path = speech.render_speech(SPEECH_CACHE, [name], [HELD_APART_SENTENCE])[name][0]
    samples, rate = soundfile.read(str(path), dtype="float32")
    return samples, rate


def test_the_snr_estimate_tells_clean_speech_from_speech_under_noise():
    samples, rate = _held_apart_samples("festival-kal")
    assert rate == voice.MODEL_SAMPLE_RATE_HZ

    assert voice.estimated_snr_db(samples) >= voice.NOISY_BELOW_SNR_DB
    assert voice.estimated_snr_db(_noisy(samples, 10.0)) < voice.NOISY_BELOW_SNR_DB


def test_a_held_apart_sentence_under_noise_is_closest_to_its_own_speaker(embeddings):
    for tested_name in VOICES:
        samples, rate = _held_apart_samples(tested_name)
        noisy = voice.embed(_noisy(samples, 10.0), rate)

        scores = {name: voice.similarity(embeddings[name][0], noisy) for name in VOICES}

        assert max(scores, key=scores.__getitem__) == tested_name, scores


def test_an_embedding_round_trips_through_bytes(embeddings):
    embedding = embeddings["festival-slt"][1]

    data = embedding.to_bytes()
    restored = voice.VoiceEmbedding.from_bytes(data)

    assert len(data) == voice.EMBEDDING_SIZE * 4
    assert np.array_equal(restored.vector, embedding.vector)
    assert voice.similarity(restored, embedding) == pytest.approx(1.0, abs=1e-6)


def test_bytes_of_the_wrong_length_or_norm_are_not_an_embedding():
    with pytest.raises(ValueError, match="1024 bytes"):
        voice.VoiceEmbedding.from_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError, match="unit norm"):
        voice.VoiceEmbedding.from_bytes(np.zeros(voice.EMBEDDING_SIZE, dtype="<f4").tobytes())


def test_confidence_rises_with_the_score_and_stays_within_zero_and_one():
    scores = np.linspace(-1.0, 1.0, 41)
    confidences = [voice.confidence(float(score)) for score in scores]

    assert all(0.0 <= value <= 1.0 for value in confidences)
    assert confidences == sorted(confidences)
    # The threshold sits at the low-false-positive end, above the even-odds point of the calibration.
    assert voice.confidence(voice.same_speaker_threshold) > 0.9
    assert voice.confidence(0.5) < 0.05


def test_integer_pcm_and_stereo_input_give_the_same_voice_as_float_mono(embeddings):
    import soundfile

    path = speech.render_speech(SPEECH_CACHE, ["festival-kal"], [ENROL_SENTENCE])["festival-kal"][0]
    samples, rate = soundfile.read(str(path), dtype="int16")
    stereo = np.stack([samples, samples], axis=1)

    score = voice.similarity(voice.embed(stereo, rate), embeddings["festival-kal"][0])

    assert score == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("samples", "rate", "error", "code"),
    [
        (np.full(16_000, np.nan, dtype=np.float32), 16_000, CorruptMedia, "corrupt_media"),
        (np.zeros(48_000, dtype=np.float32), 16_000, CorruptMedia, "corrupt_media"),
        (np.array(["not", "audio"]), 16_000, UnsupportedMedia, "unsupported_media"),
        (np.zeros((0,), dtype=np.float32), 16_000, UnsupportedMedia, "unsupported_media"),
        (np.zeros((2, 2, 2), dtype=np.float32), 16_000, UnsupportedMedia, "unsupported_media"),
        (np.zeros(16_000, dtype=np.float32), 0, UnsupportedMedia, "unsupported_media"),
        (np.zeros(601 * 8_000, dtype=np.float32), 8_000, MediaTooLarge, "media_too_large"),
    ],
    ids=["nan", "silence", "strings", "empty", "three-dimensional", "zero-rate", "too-long"],
)
def test_input_that_is_not_usable_speech_raises_a_media_error(samples, rate, error, code):
    with pytest.raises(error) as raised:
        voice.embed(samples, rate)

    assert isinstance(raised.value, MediaError)
    assert raised.value.code == code


def test_a_file_that_is_not_audio_raises_unsupported_media(tmp_path):
    garbage = tmp_path / "song.mp3"
    garbage.write_bytes(b"<html>this is not audio</html>" * 40)

    with pytest.raises(UnsupportedMedia):
        voice.embed_file(garbage)
