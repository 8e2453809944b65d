"""Benchmark the voice conversion generator (media.generators.voice_convert) on real speakers and singers.

    python -m bench.voice_conversion [--voices NAME ...] [--method frames|envelope]
        [--enrol-sentences N [N ...]] [--targets-per-source N] [--no-speed]

Voices: the reading voices of ``media.samples.speech`` (Festival and flite voices built from recordings of
15 real people, in English, Catalan, Czech, Italian, Russian and Finnish). Every voice is a target: its
VOICE work holds its first N sentences other than 2 and 3 (N recordings, registered one asset each, as the
product does; N = 2 by default: sentences 0 and 1; `--enrol-sentences 2 8 22` runs the whole bench once for
each size, 22 being every sentence but the two held apart, about 100 s of speech). Every voice is also a
source: it says sentence 3 (a sentence none of the enrolments holds), and the two singing voices also sing
``speech.SONG``. Each source is converted into every other voice through the
generator's own ``run`` (WAV in, WAV out), so a pair is exactly what the studio would make.

Prints, over all pairs, then spoken and sung apart:
- target similarity: the distribution of cos(converted, target) - cos(converted, source) with the platform's
  voice embedding (the judge of record), where each side's score is the best over that speaker's two
  registered recordings (as the product's index scores a voice work's assets), and the share above 0;
- trace: the share of pairs the product's own decision attributes to the target's VOICE work at the
  confidence that opens a claim: an embedding scored against every registered recording of all the voices
  (``media.services.content_match``: a match at ``voice.SAME_SPEAKER_THRESHOLD`` or above, with confidence
  ``voice.confidence``), claimed at ``catalog.tracing.CLAIM_CONFIDENCE`` (read from the product); also how
  often the target is the top match, and how often the source's own VOICE work is claimed too;
- intelligibility: the normalised cepstral distance of the converted vocal to its source (40 log-mel bands,
  cepstra 1-24 each normalised to zero mean and unit variance per recording, frame by frame since the
  duration is kept), beside three references on the same scale: the source through WORLD unchanged (the
  vocoder's floor), another speaker saying the same sentence (time-aligned by DTW: "same words, other
  voice"), and the same speaker saying another sentence (DTW: "other words");
- never registered: each voice's own sentence 3, unconverted, against an index of every other voice's
  works: how often a speaker who never registered a voice is claimed for some registered voice work (the
  trace's false claims, which more registered recordings per work could raise);
- speed: a 60 s vocal converted (profile learning timed apart), as x real time, with the load average.

No second, independent speaker encoder whose weights ship in a registry package was found (the ones on PyPI
fetch their weights at run time), so the platform's embedding is the only judge here.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from media.fingerprint import voice
from media.generators import voice_convert
from media.samples import speech

SOURCE_SENTENCE = 3
OTHER_SENTENCE = 2
# The sentences a voice work may be enrolled with, in the order they are taken (all but the two held apart).
ENROL_ORDER = tuple(
    i for i in range(len(speech.SENTENCES["en"])) if i not in (OTHER_SENTENCE, SOURCE_SENTENCE)
)
ENROL = ENROL_ORDER[:2]
RATE = speech.SAMPLE_RATE_HZ
SPEED_VOCAL_S = 60.0
READING_VOICES = tuple(voice.name for voice in speech.VOICES if voice.engine != "klettres")


def _claim_confidence() -> float:
    """The confidence at which the product's trace opens a claim, read from the product itself."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
    import django

    django.setup()
    from catalog.tracing import CLAIM_CONFIDENCE

    return float(CLAIM_CONFIDENCE)


@dataclass(frozen=True)
class Pair:
    source: str
    target: str
    sung: bool
    to_target: float
    to_source: float
    claimed_target: bool
    top_is_target: bool
    claimed_source: bool
    distance: float
    word_errors: float | None = None  # the recogniser's word error rate, English spoken sources only


def _load(path: Path) -> np.ndarray:
    samples, rate = soundfile.read(str(path), dtype="float32")
    assert rate == RATE
    return samples


def _wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _raw_cepstra(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames x 24 mel-cepstra (1..24 of 40 log-mel bands, 25 ms frames every 10 ms) and which frames sound
    (within 40 dB of the loudest)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=samples, sr=RATE, n_fft=400, hop_length=160, n_mels=40)
    log_mel = np.log(mel + 1e-10)
    coefficients = librosa.feature.mfcc(S=log_mel, n_mfcc=25)[1:].T
    energy = log_mel.max(axis=0)
    return coefficients, energy > energy.max() - np.log(10.0) * 4.0


def _normalised(coefficients: np.ndarray) -> np.ndarray:
    return (coefficients - coefficients.mean(axis=0)) / (coefficients.std(axis=0) + 1e-9)


def cepstra(samples: np.ndarray) -> np.ndarray:
    """The sounding frames' mel-cepstra, each normalised over the recording to zero mean and unit variance:
    what the words leave once the speaker's average is taken out."""
    coefficients, sounding = _raw_cepstra(samples)
    return _normalised(coefficients[sounding])


def distance_aligned(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance per frame between two equally long recordings' normalised cepstra, over
    the frames where the first one sounds."""
    ca, sounding = _raw_cepstra(a)
    cb, _ = _raw_cepstra(b)
    frames = min(len(ca), len(cb))
    kept = sounding[:frames]
    return float(
        np.mean(np.linalg.norm(_normalised(ca[:frames][kept]) - _normalised(cb[:frames][kept]), axis=1))
    )


def distance_dtw(a: np.ndarray, b: np.ndarray) -> float:
    """The same distance along the best time alignment (DTW) of two recordings of different lengths."""
    import librosa

    ca, cb = cepstra(a), cepstra(b)
    cost, path = librosa.sequence.dtw(X=ca.T, Y=cb.T, metric="euclidean")
    return float(cost[-1, -1] / len(path))


class Recogniser:
    """pocketsphinx (its en-us model ships in the wheel; dev dependency), for English speech at 16 kHz."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=RATE, loglevel="FATAL")

    def words(self, samples: np.ndarray) -> list[str]:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return hypothesis.hypstr.split() if hypothesis is not None else []


def words_of(text: str) -> list[str]:
    return "".join(c.lower() if c.isalpha() or c == "'" else " " for c in text).split()


def word_error_rate(reference: list[str], heard: list[str]) -> float:
    """Levenshtein distance over words (substitutions, insertions, deletions) / reference length."""
    row = list(range(len(heard) + 1))
    for i, word in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(heard, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1] / max(1, len(reference))


def _quartiles(values: Sequence[float]) -> str:
    array = np.asarray(values)
    q = np.quantile(array, [0.0, 0.25, 0.5, 0.75, 1.0])
    return " ".join(
        f"{label} {value:+.3f}" for label, value in zip(("min", "q1", "median", "q3", "max"), q, strict=True)
    )


def report(title: str, pairs: Sequence[Pair]) -> None:
    if not pairs:
        return
    margins = [pair.to_target - pair.to_source for pair in pairs]
    print(f"\n== {title}: {len(pairs)} pairs")
    print(f"cos(converted, target) - cos(converted, source): {_quartiles(margins)}")
    print(f"closer to the target than to the source: {np.mean(np.array(margins) > 0) * 100:.1f}% of pairs")
    print(f"cos(converted, target): {_quartiles([pair.to_target for pair in pairs])}")
    print(f"cos(converted, source): {_quartiles([pair.to_source for pair in pairs])}")
    claimed = np.mean([pair.claimed_target for pair in pairs]) * 100
    top = np.mean([pair.top_is_target for pair in pairs]) * 100
    both = np.mean([pair.claimed_source for pair in pairs]) * 100
    print(f"trace: target's VOICE work claimed {claimed:.1f}%; target the top match {top:.1f}%; ", end="")
    print(f"source's own VOICE work claimed too {both:.1f}%")
    errors = [pair.word_errors for pair in pairs if pair.word_errors is not None]
    if errors:
        print(
            f"recogniser word error rate of the converted vocal: mean {np.mean(errors) * 100:.1f}% "
            f"over {len(errors)} English spoken pairs"
        )
    distances = np.array([pair.distance for pair in pairs])
    print(
        f"normalised cepstral distance to the source: median {np.median(distances):.2f} "
        f"(q1 {np.quantile(distances, 0.25):.2f}, q3 {np.quantile(distances, 0.75):.2f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache", type=Path, default=Path("var/samples/speech"))
    parser.add_argument("--voices", nargs="+", default=list(READING_VOICES))
    parser.add_argument("--method", choices=voice_convert.METHODS, default=voice_convert.DEFAULT_METHOD)
    parser.add_argument(
        "--targets-per-source",
        type=int,
        default=None,
        help="convert each source into this many targets (taken in turn), not all: for a loaded machine",
    )
    parser.add_argument(
        "--enrol-sentences",
        type=int,
        nargs="+",
        default=[len(ENROL)],
        choices=range(1, len(ENROL_ORDER) + 1),
        metavar="N",
        help=f"enrol each voice work with its first N sentences (1-{len(ENROL_ORDER)}); several: a sweep",
    )
    parser.add_argument("--no-speed", action="store_true", help="skip the 60 s speed measurement")
    parser.add_argument("--speed-only", action="store_true", help="only the 60 s speed measurement")
    arguments = parser.parse_args()
    started = time.perf_counter()
    claim_confidence = _claim_confidence()

    speech.ensure_system_packages()
    names = list(arguments.voices)
    renders = speech.render_speech(arguments.cache, names, range(len(speech.SENTENCES["en"])))
    if arguments.speed_only:
        _speed(renders, names, ENROL_ORDER[: max(arguments.enrol_sentences)])
        return 0
    songs = {
        name: speech.render_song(arguments.cache, name) for name in speech.SINGING_VOICES if name in names
    }
    print(f"{len(names)} voices ({len(songs)} also singing), ready in {time.perf_counter() - started:.0f} s")
    print(f"method {arguments.method}; claim at confidence {claim_confidence} (catalog.tracing), ", end="")
    print(f"voice match at cosine {voice.SAME_SPEAKER_THRESHOLD} (media.fingerprint.voice)")

    for size in arguments.enrol_sentences:
        enrol = ENROL_ORDER[:size]
        print(f"\n#### enrolment: {size} sentences per voice work {enrol}", flush=True)
        _run(arguments, names, renders, songs, enrol, claim_confidence)

    if not arguments.no_speed:
        _speed(renders, names, ENROL_ORDER[: max(arguments.enrol_sentences)])
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


def _run(
    arguments: argparse.Namespace,
    names: Sequence[str],
    renders: dict[str, list[Path]],
    songs: dict[str, Path],
    enrol: Sequence[int],
    claim_confidence: float,
) -> None:
    """Every pair, with each voice work holding the sentences `enrol`."""
    # The index: every registered recording of every voice work, one embedding each (as embed_file does).
    recordings = {name: [renders[name][i].read_bytes() for i in enrol] for name in names}
    index_owner: list[str] = []
    index_vectors: list[np.ndarray] = []
    for name in names:
        for data in recordings[name]:
            index_owner.append(name)
            index_vectors.append(voice.embed_file(data).vector)
    vectors = np.vstack(index_vectors)

    begin = time.perf_counter()
    # Each voice is learned once, as the app can keep a profile with its voice work (VoiceProfile.to_dict);
    # the generator's `run` learns it from the same recordings on every call, to the same result.
    profiles = {
        name: voice_convert.voice_profile([(_load(renders[name][i]), RATE) for i in enrol]) for name in names
    }
    seconds = np.mean([profile.voiced_s for profile in profiles.values()])
    learned_s = time.perf_counter() - begin
    print(f"voices learned in {learned_s:.0f} s; {seconds:.0f} s of voiced speech each on average")
    _never_registered(names, renders, index_owner, vectors, claim_confidence)
    sources = [(name, renders[name][SOURCE_SENTENCE], False) for name in names] + [
        (name, path, True) for name, path in songs.items()
    ]
    pairs: list[Pair] = []
    floor: list[float] = []
    recogniser = Recogniser()
    reference = words_of(speech.SENTENCES["en"][SOURCE_SENTENCE])
    source_errors: list[float] = []
    vocoder_errors: list[float] = []
    convert_s = 0.0
    for source, path, sung in sources:
        source_samples = _load(path)
        resynthesised = _resynthesised(source_samples)
        floor.append(distance_aligned(source_samples, resynthesised))
        english = not sung and speech.VOICES_BY_NAME[source].language == "en"
        if english:
            source_errors.append(word_error_rate(reference, recogniser.words(source_samples)))
            vocoder_errors.append(word_error_rate(reference, recogniser.words(resynthesised)))
        others = [name for name in names if name != source]
        start = names.index(source) % len(others)
        targets = (others[start:] + others[:start])[: arguments.targets_per_source]
        for target in targets:
            begin = time.perf_counter()
            converted = voice_convert.conversion(
                source_samples, RATE, profiles[target], method=arguments.method
            ).samples
            convert_s += time.perf_counter() - begin
            # Through a 16-bit WAV file, as the generator hands it over and the trace decodes it.
            embedding = voice.embed_file(_wav(converted))
            scores = vectors @ embedding.vector
            best: dict[str, float] = {}
            for owner, score in zip(index_owner, scores, strict=True):
                best[owner] = max(best.get(owner, -1.0), float(score))

            pairs.append(
                Pair(
                    source=source,
                    target=target,
                    sung=sung,
                    to_target=best[target],
                    to_source=best[source],
                    claimed_target=_claimed(best[target], claim_confidence),
                    top_is_target=max(best, key=lambda owner: best[owner]) == target,
                    claimed_source=_claimed(best[source], claim_confidence),
                    distance=distance_aligned(source_samples, converted),
                    word_errors=word_error_rate(reference, recogniser.words(converted)) if english else None,
                )
            )
        print(f"  {source}{' (sung)' if sung else ''}: {len(targets)} conversions", flush=True)

    report("all pairs", pairs)
    report("spoken sources", [pair for pair in pairs if not pair.sung])
    report("sung sources", [pair for pair in pairs if pair.sung])
    worst = sorted(pairs, key=lambda pair: pair.to_target - pair.to_source)[:5]
    print(
        "\nhardest pairs: "
        + "; ".join(f"{p.source}->{p.target} {p.to_target - p.to_source:+.3f}" for p in worst)
    )

    other_voice = [
        distance_dtw(_load(renders[a][SOURCE_SENTENCE]), _load(renders[b][SOURCE_SENTENCE]))
        for a in names
        for b in names
        if a != b and speech.VOICES_BY_NAME[a].language == speech.VOICES_BY_NAME[b].language
    ]
    other_words = [
        distance_dtw(_load(renders[name][SOURCE_SENTENCE]), _load(renders[name][OTHER_SENTENCE]))
        for name in names
    ]
    print("\nintelligibility references (same scale, median):")
    print(f"  WORLD analysis and resynthesis unchanged (vocoder floor): {np.median(floor):.2f}")
    if other_voice:
        print(f"  another speaker, same sentence (DTW): {np.median(other_voice):.2f}")
    print(f"  same speaker, another sentence (DTW): {np.median(other_words):.2f}")
    if source_errors:
        print(
            f"recogniser word error rate on the {len(source_errors)} English sources: as rendered "
            f"{np.mean(source_errors) * 100:.1f}%, "
            f"through WORLD unchanged {np.mean(vocoder_errors) * 100:.1f}%"
        )
    print(f"\nconversion inside the pair loop: {convert_s:.1f} s for {len(pairs)} conversions")


def _never_registered(
    names: Sequence[str],
    renders: dict[str, list[Path]],
    index_owner: Sequence[str],
    vectors: np.ndarray,
    claim_confidence: float,
) -> None:
    """Each voice's sentence 3, unconverted, against the other voices' registered recordings."""
    claimed = 0
    for name in names:
        embedding = voice.embed_file(renders[name][SOURCE_SENTENCE].read_bytes())
        scores = vectors @ embedding.vector
        others = [float(score) for owner, score in zip(index_owner, scores, strict=True) if owner != name]
        claimed += any(_claimed(score, claim_confidence) for score in others)
    print(
        f"never registered: a voice not in the index claimed for some registered voice work in {claimed} of "
        f"{len(names)} voices ({claimed / len(names) * 100:.1f}%)"
    )


def _claimed(score: float, claim_confidence: float) -> bool:
    """The product's decision: a voice match (media.services.content_match) confident enough to claim
    (catalog.tracing.open_claims)."""
    return score >= voice.SAME_SPEAKER_THRESHOLD and voice.confidence(score) >= claim_confidence


def _resynthesised(samples: np.ndarray) -> np.ndarray:
    """The recording through WORLD's analysis and resynthesis with nothing changed (the vocoder's floor)."""
    pyworld = voice_convert._pyworld()
    x = samples.astype(np.float64)
    f0, times = pyworld.dio(x, RATE, f0_floor=voice_convert.F0_FLOOR_HZ, f0_ceil=voice_convert.F0_CEIL_HZ)
    f0 = pyworld.stonemask(x, f0, times, RATE)
    resynthesised = pyworld.synthesize(
        f0, pyworld.cheaptrick(x, f0, times, RATE), pyworld.d4c(x, f0, times, RATE), RATE
    )[: x.size]
    return np.asarray(resynthesised, dtype=np.float32)


def _speed(renders: dict[str, list[Path]], names: Sequence[str], enrol: Sequence[int]) -> None:
    """A 60 s vocal (one voice's sentences in a loop) into another voice learned from its sentences
    `enrol` (the largest enrolment asked for), at 16 kHz and at 44.1 kHz (an upload's usual rate, analysed
    at WORK_RATE_HZ)."""
    from scipy.signal import resample_poly

    source, target = names[0], names[1]
    pieces = [_load(renders[source][i]) for i in (*ENROL, OTHER_SENTENCE, SOURCE_SENTENCE)]
    vocal = np.resize(np.concatenate(pieces), int(SPEED_VOCAL_S * RATE)).astype(np.float32)
    begin = time.perf_counter()
    profile = voice_convert.voice_profile([(_load(renders[target][i]), RATE) for i in enrol])
    print(
        f"\nspeed: learning the voice from {len(enrol)} recordings ({profile.cepstra.shape[0]} frames kept) "
        f"{time.perf_counter() - begin:.2f} s"
    )
    for rate in (RATE, 44_100):
        samples = vocal if rate == RATE else resample_poly(vocal, 441, 160).astype(np.float32)
        load_before = os.getloadavg()[0]
        cpu_begin = time.process_time()
        begin = time.perf_counter()
        voice_convert.convert(samples, rate, profile)
        convert_s = time.perf_counter() - begin
        cpu_s = time.process_time() - cpu_begin
        print(
            f"  a {SPEED_VOCAL_S:.0f} s vocal at {rate} Hz converted in {convert_s:.2f} s "
            f"({SPEED_VOCAL_S / convert_s:.1f}x real time, {convert_s / SPEED_VOCAL_S:.3f} s per second); "
            f"CPU time {cpu_s:.2f} s ({SPEED_VOCAL_S / cpu_s:.1f}x real time); load average "
            f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs"
        )


if __name__ == "__main__":
    raise SystemExit(main())
