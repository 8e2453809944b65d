"""Voice conversion on real speakers (Festival voices built from real people's recordings): the converted
vocal is heard, by the platform's own voice embedding, as the target voice; its length is kept; bad input
is refused with a stable code; a learned voice survives a round trip through its JSON-able dict."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from media.fingerprint import voice
from media.generators import BUILT_IN, GenerationFailed, GenerationRequest, ParentMedia, voice_convert
from media.generators.voice_convert import (
    MATCH_FAR,
    MATCH_NEAR,
    PROFILE_KEY,
    VoiceConversion,
    VoiceProfile,
    conversion,
    convert,
    match_weight,
    voice_profile,
)
from media.samples import speech

SPEECH_CACHE = Path(__file__).resolve().parents[2] / "var" / "samples" / "speech"
# A man's voice and a woman's: the conversion has to move pitch, vocal tract and timbre both ways.
VOICES = ("festival-kal", "festival-slt")
ENROL_SENTENCES = (0, 1)
SOURCE_SENTENCE = 3


def read(path: Path) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(str(path), dtype="float32")
    return samples, rate


@pytest.fixture(scope="module")
def renders() -> dict[str, list[Path]]:
    speech.ensure_system_packages()
    return speech.render_speech(SPEECH_CACHE, VOICES, (*ENROL_SENTENCES, SOURCE_SENTENCE))


@pytest.fixture(scope="module")
def profiles(renders) -> dict[str, VoiceProfile]:
    return {name: voice_profile([read(path) for path in paths[:2]]) for name, paths in renders.items()}


@pytest.fixture(scope="module")
def enrolled(renders) -> dict[str, list[voice.VoiceEmbedding]]:
    return {name: [voice.embed_file(path) for path in paths[:2]] for name, paths in renders.items()}


def best_score(embedding: voice.VoiceEmbedding, enrolment: list[voice.VoiceEmbedding]) -> float:
    return max(voice.similarity(embedding, registered) for registered in enrolment)


@pytest.mark.parametrize(("source", "target"), [VOICES, VOICES[::-1]])
def test_the_converted_vocal_is_heard_as_the_target_voice(renders, profiles, enrolled, source, target):
    samples, rate = read(renders[source][-1])

    converted = convert(samples, rate, profiles[target])

    heard = voice.embed(converted, rate)
    unconverted = voice.embed(samples, rate)
    to_target = best_score(heard, enrolled[target])
    assert to_target > best_score(heard, enrolled[source])
    assert to_target > best_score(unconverted, enrolled[target]) + 0.1


def test_the_generator_keeps_the_length_and_says_what_it_did(renders):
    vocal = renders["festival-kal"][-1].read_bytes()
    parents = [
        ParentMedia(work_id=7, title=f"slt {index}", media_type="audio/wav", data=path.read_bytes())
        for index, path in enumerate(renders["festival-slt"][:2])
    ]
    stages: list[int] = []

    made = VoiceConversion().run(
        GenerationRequest(parents=parents, inputs={"vocal": vocal}), lambda percent, _: stages.append(percent)
    )

    original = soundfile.info(io.BytesIO(vocal))
    result = soundfile.info(io.BytesIO(made.data))
    assert (made.media_type, made.extension) == ("audio/wav", "wav")
    assert (result.samplerate, result.frames) == (original.samplerate, original.frames)
    assert made.details["voice_recordings_used"] == 2
    # A man's vocal in a woman's voice goes up by about an octave.
    assert 8 <= made.details["pitch_shift_semitones"] <= 16
    assert made.details["voice_median_f0_hz"] > made.details["vocal_median_f0_hz"]
    assert stages == sorted(stages) and stages[-1] == 100


def test_it_is_built_in_and_needs_the_voice_use():
    generator = BUILT_IN["voice-convert"]
    assert generator.use_classes == {"voice", "derivative"}
    assert (generator.parent_kind, generator.output_kind) == ("audio", "audio")
    assert [(spec.name, spec.kind, spec.required) for spec in generator.inputs] == [("vocal", "audio", True)]


def test_a_silent_vocal_is_refused(profiles):
    with pytest.raises(GenerationFailed) as refused:
        convert(np.zeros(3 * 16_000, dtype=np.float32), 16_000, profiles["festival-slt"])
    assert refused.value.code == "vocal_not_voiced"


def test_noise_alone_is_not_a_vocal(profiles):
    noise = np.random.default_rng(5).normal(0.0, 0.05, 3 * 16_000).astype(np.float32)
    with pytest.raises(GenerationFailed) as refused:
        convert(noise, 16_000, profiles["festival-slt"])
    assert refused.value.code == "vocal_not_voiced"


def test_a_voice_with_too_little_recorded_speech_is_refused(renders):
    samples, rate = read(renders["festival-slt"][0])
    with pytest.raises(GenerationFailed) as too_short:
        voice_profile([(samples[: rate // 2], rate)])
    with pytest.raises(GenerationFailed) as silent:
        voice_profile([(np.zeros(5 * rate, dtype=np.float32), rate)])
    assert too_short.value.code == silent.value.code == "voice_recordings_too_short"


def test_the_generator_refuses_a_request_without_the_voice_or_the_vocal(renders):
    vocal = renders["festival-kal"][-1].read_bytes()
    parent = ParentMedia(
        work_id=7, title="slt", media_type="audio/wav", data=renders["festival-slt"][0].read_bytes()
    )
    with pytest.raises(GenerationFailed) as no_voice:
        VoiceConversion().run(GenerationRequest(parents=[], inputs={"vocal": vocal}), lambda *_: None)
    with pytest.raises(GenerationFailed) as no_vocal:
        VoiceConversion().run(GenerationRequest(parents=[parent], inputs={}), lambda *_: None)
    with pytest.raises(GenerationFailed) as unreadable:
        VoiceConversion().run(
            GenerationRequest(parents=[parent], inputs={"vocal": b"not audio"}), lambda *_: None
        )
    assert (no_voice.value.code, no_vocal.value.code) == ("missing_parent", "missing_input")
    assert unreadable.value.code == "vocal_unreadable"


def test_a_profile_round_trips_through_its_json_dict(renders, profiles):
    profile = profiles["festival-slt"]

    restored = VoiceProfile.from_dict(json.loads(json.dumps(profile.to_dict())))

    assert restored.to_dict() == profile.to_dict()
    assert np.array_equal(restored.cepstra, profile.cepstra)
    assert np.array_equal(restored.aperiodicity, profile.aperiodicity)
    assert np.array_equal(restored.voiced, profile.voiced)
    samples, rate = read(renders["festival-kal"][-1])
    assert np.array_equal(convert(samples, rate, restored), convert(samples, rate, profile))
    assert conversion(samples, rate, restored).semitones == conversion(samples, rate, profile).semitones


def test_a_profile_of_another_version_is_not_read(profiles):
    stale = {**profiles["festival-slt"].to_dict(), "version": 1}
    with pytest.raises(ValueError, match="version"):
        VoiceProfile.from_dict(stale)


def test_a_frame_takes_the_matched_envelope_by_how_well_it_was_matched():
    weights = match_weight([0.0, MATCH_NEAR, (MATCH_NEAR + MATCH_FAR) / 2, MATCH_FAR, MATCH_FAR * 3])
    assert weights.tolist() == pytest.approx([1.0, 1.0, 0.5, 0.0, 0.0])


def test_the_generator_uses_a_profile_the_app_kept_and_learns_nothing(renders, profiles, monkeypatch):
    learned: list[int] = []
    learn = voice_convert.voice_profile

    def counting(recordings):
        learned.append(len(recordings))
        return learn(recordings)

    monkeypatch.setattr(voice_convert, "voice_profile", counting)
    vocal = renders["festival-kal"][-1].read_bytes()
    parent = ParentMedia(
        work_id=7, title="slt", media_type="audio/wav", data=renders["festival-slt"][0].read_bytes()
    )
    request = GenerationRequest(
        parents=[parent], inputs={"vocal": vocal}, prepared={PROFILE_KEY: profiles["festival-slt"]}
    )

    made = VoiceConversion().run(request, lambda *_: None)

    assert learned == []
    samples, rate = read(renders["festival-kal"][-1])
    expected = convert(samples, rate, profiles["festival-slt"])
    heard, _ = soundfile.read(io.BytesIO(made.data), dtype="float32")
    assert np.abs(heard - expected).max() < 1e-3  # the same conversion, through a 16-bit WAV
