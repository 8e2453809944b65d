"""Benchmark the speaker embedding (media.fingerprint.voice) on real speakers.

Every voice of media.samples.speech says four held-apart sentences (different text, or disjoint recordings).
Sentences 0 and 1 are the creator's enrolled voice work, uploaded clean; sentences 2 and 3 are the
suspect recordings, tested clean and degraded as a re-upload would be: MP3 at 64 kbit/s, then white or
pink (1/f) noise at each --snr-db. A genuine trial pairs a test sentence with its own speaker's enrolment,
an impostor trial with every other speaker's. Prints, per test condition, the equal error rate, the
threshold there and error rates at the shipped threshold; then a logistic calibration for
voice.confidence fitted on all conditions pooled, the closest impostor pairs, the sung-versus-spoken
result, and the embedding speed. --without-denoising switches the noise front end off (the v1 method),
for comparison.

Run: ``python bench/fingerprint_voice.py [--snr-db 15 10] [--cache var/samples/speech]``
"""

from __future__ import annotations

import argparse
import io
import itertools
import time
from pathlib import Path

import numpy as np
import soundfile

from media.fingerprint import voice
from media.samples import speech

ENROL_SENTENCES = (0, 1)
TEST_SENTENCES = (2, 3)
MP3_BITRATE_MODE = "CONSTANT"
MP3_COMPRESSION_LEVEL = 0.6  # libsndfile's 0..1 scale; 0.6 is about 64 kbit/s for 16 kHz mono


NOISE_COLOURS = ("white", "pink")


def pink_noise(size: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise with power falling as 1/f (white noise shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.normal(size=size))
    frequencies = np.arange(spectrum.size, dtype=np.float64)
    frequencies[0] = 1.0
    shaped = np.fft.irfft(spectrum / np.sqrt(frequencies), size)
    return shaped / shaped.std()


def degrade(
    samples: np.ndarray, rate: int, snr_db: float, rng: np.random.Generator, colour: str = "white"
) -> np.ndarray:
    buffer = io.BytesIO()
    soundfile.write(
        buffer,
        samples,
        rate,
        format="MP3",
        subtype="MPEG_LAYER_III",
        bitrate_mode=MP3_BITRATE_MODE,
        compression_level=MP3_COMPRESSION_LEVEL,
    )
    buffer.seek(0)
    decoded, _ = soundfile.read(buffer, dtype="float32")
    signal_power = float(np.mean(decoded**2))
    unit_noise = rng.normal(size=decoded.shape) if colour == "white" else pink_noise(decoded.size, rng)
    noise = unit_noise * np.sqrt(signal_power / 10 ** (snr_db / 10))
    return (decoded + noise).astype(np.float32)


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) by sweeping every observed score as a threshold (accept when score >= threshold)."""
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    false_reject = np.array([np.mean(genuine < t) for t in thresholds])
    false_accept = np.array([np.mean(impostor >= t) for t in thresholds])
    best = int(np.argmin(np.abs(false_reject - false_accept)))
    return float((false_reject[best] + false_accept[best]) / 2), float(thresholds[best])


def fit_logistic(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """Fit P(same) = 1/(1+exp(-slope*(s-midpoint))) by Newton's method, weighting both classes equally."""
    scores = np.concatenate([genuine, impostor])
    labels = np.concatenate([np.ones_like(genuine), np.zeros_like(impostor)])
    weights = np.concatenate(
        [np.full(genuine.size, 0.5 / genuine.size), np.full(impostor.size, 0.5 / impostor.size)]
    )
    design = np.stack([scores, np.ones_like(scores)], axis=1)
    params = np.array([10.0, -7.0])
    for _ in range(100):
        probability = 1 / (1 + np.exp(-design @ params))
        gradient = design.T @ (weights * (probability - labels))
        hessian = design.T @ (design * (weights * probability * (1 - probability))[:, None])
        # A little ridge keeps Newton stable when the classes barely overlap.
        step = np.linalg.solve(hessian + 1e-6 * np.eye(2), gradient)
        params -= step
        if np.max(np.abs(step)) < 1e-9:
            break
    slope, intercept = params
    return float(slope), float(-intercept / slope)


def report(title: str, genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    eer, threshold = equal_error_rate(genuine, impostor)
    shipped = voice.SAME_SPEAKER_THRESHOLD
    print(f"\n== {title}: {genuine.size} genuine, {impostor.size} impostor trials")
    print(f"EER {eer * 100:.2f}% at threshold {threshold:.3f}")
    print(
        f"at shipped threshold {shipped:.2f}: FPR {np.mean(impostor >= shipped) * 100:.2f}%  "
        f"FNR {np.mean(genuine < shipped) * 100:.2f}%"
    )
    for target in (0.01, 0.001):
        low_fpr_threshold = float(np.quantile(impostor, 1 - target))
        print(
            f"FPR {target * 100:g}% needs threshold {low_fpr_threshold:.3f}: "
            f"FNR {np.mean(genuine < low_fpr_threshold) * 100:.2f}%"
        )
    print(
        f"genuine mean {genuine.mean():.3f} (min {genuine.min():.3f}); "
        f"impostor mean {impostor.mean():.3f} (max {impostor.max():.3f})"
    )
    return eer, threshold


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache", type=Path, default=Path("var/samples/speech"))
    parser.add_argument("--snr-db", type=float, nargs="+", default=[15.0, 10.0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--without-denoising", action="store_true", help="skip the noise front end (v1)")
    arguments = parser.parse_args()
    rng = np.random.default_rng(arguments.seed)
    if arguments.without_denoising:
        # An ablation for the comparison only: the shipped embedding always has its front end.
        voice._denoised = lambda wav: wav

    speech.ensure_system_packages()
    started = time.perf_counter()
    renders = speech.render_speech(arguments.cache, sentences=(*ENROL_SENTENCES, *TEST_SENTENCES))
    print(f"{len(renders)} voices rendered or loaded in {time.perf_counter() - started:.1f} s")
    names = list(renders)

    voice.embed_file(renders[names[0]][0])  # loads the model, so the timings below are steady state
    embed_seconds = 0.0
    audio_seconds = 0.0

    def timed_embed(samples: np.ndarray, rate: int) -> voice.VoiceEmbedding:
        nonlocal embed_seconds, audio_seconds
        begin = time.perf_counter()
        embedding = voice.embed(samples, rate)
        embed_seconds += time.perf_counter() - begin
        audio_seconds += samples.shape[0] / rate
        return embedding

    conditions = ["clean"] + [
        f"MP3 + {colour} noise {snr_db:g} dB" for snr_db in arguments.snr_db for colour in NOISE_COLOURS
    ]
    enrol: dict[str, list[voice.VoiceEmbedding]] = {}
    tests: dict[str, dict[str, list[voice.VoiceEmbedding]]] = {condition: {} for condition in conditions}
    for name in names:
        loaded = [soundfile.read(str(path), dtype="float32") for path in renders[name]]
        enrol[name] = [timed_embed(samples, rate) for samples, rate in loaded[: len(ENROL_SENTENCES)]]
        held_apart = loaded[len(ENROL_SENTENCES) :]
        tests["clean"][name] = [timed_embed(samples, rate) for samples, rate in held_apart]
        for snr_db in arguments.snr_db:
            for colour in NOISE_COLOURS:
                tests[f"MP3 + {colour} noise {snr_db:g} dB"][name] = [
                    timed_embed(degrade(samples, rate, snr_db, rng, colour), rate)
                    for samples, rate in held_apart
                ]

    def trials(
        tested_embeddings: dict[str, list[voice.VoiceEmbedding]],
    ) -> tuple[np.ndarray, np.ndarray, list]:
        genuine, impostor, impostor_pairs = [], [], []
        for enrolled, tested in itertools.product(names, names):
            for reference, test in itertools.product(enrol[enrolled], tested_embeddings[tested]):
                score = voice.similarity(reference, test)
                if enrolled == tested:
                    genuine.append(score)
                else:
                    impostor.append(score)
                    impostor_pairs.append((score, enrolled, tested))
        return np.array(genuine), np.array(impostor), impostor_pairs

    front_end = "without denoising (v1)" if arguments.without_denoising else "with the noise front end"
    print(f"\n{len(names)} speakers, {front_end}; enrol sentences {ENROL_SENTENCES}, test {TEST_SENTENCES}")
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    summary: list[tuple[str, float, float]] = []
    pairs: list = []
    for condition in conditions:
        genuine, impostor, condition_pairs = trials(tests[condition])
        results[condition] = (genuine, impostor)
        pairs.extend((score, enrolled, tested, condition) for score, enrolled, tested in condition_pairs)
        eer, threshold = report(f"clean enrolment vs {condition} test", genuine, impostor)
        summary.append((condition, eer, threshold))
    pooled_genuine = np.concatenate([genuine for genuine, _ in results.values()])
    pooled_impostor = np.concatenate([impostor for _, impostor in results.values()])
    report("all test conditions pooled", pooled_genuine, pooled_impostor)
    slope, midpoint = fit_logistic(pooled_genuine, pooled_impostor)
    print(f"logistic calibration, pooled trials, equal priors: slope {slope:.1f}, midpoint {midpoint:.3f}")

    shipped = voice.SAME_SPEAKER_THRESHOLD
    print(f"\n| test condition | EER | threshold at EER | at {shipped:.2f}: FPR / FNR |")
    print("| --- | --- | --- | --- |")
    for condition, eer, threshold in summary:
        genuine, impostor = results[condition]
        print(
            f"| {condition} | {eer * 100:.2f}% | {threshold:.3f} | "
            f"{np.mean(impostor >= shipped) * 100:.1f}% / {np.mean(genuine < shipped) * 100:.1f}% |"
        )
    print("\nthreshold  " + "  ".join(f"{condition[-20:]:>20s}" for condition in conditions))
    for threshold in np.arange(0.55, 0.826, 0.025):
        cells = [
            f"{np.mean(impostor >= threshold) * 100:5.1f}% FP {np.mean(genuine < threshold) * 100:5.1f}% FN"
            for genuine, impostor in results.values()
        ]
        print(f"  {threshold:.3f}   " + "  ".join(f"{cell:>20s}" for cell in cells))
    print("closest impostor pairs (enrolled <- tested, test condition):")
    for score, enrolled, tested, condition in sorted(pairs, reverse=True)[:6]:
        print(f"  {score:.3f} {enrolled} <- {tested} ({condition})")

    song_snr_db = arguments.snr_db[0]
    print(
        f"\n== sung versus spoken (festival singing mode, own words and tune; MP3 + white {song_snr_db:g} dB)"
    )
    for singer in speech.SINGING_VOICES:
        samples, rate = soundfile.read(str(speech.render_song(arguments.cache, singer)), dtype="float32")
        sung = timed_embed(degrade(samples, rate, song_snr_db, rng), rate)
        ranked = sorted(
            ((max(voice.similarity(sung, reference) for reference in enrol[name]), name) for name in names),
            reverse=True,
        )
        own = next(score for score, name in ranked if name == singer)
        rank = [name for _, name in ranked].index(singer) + 1
        best_other = next(score for score, name in ranked if name != singer)
        print(
            f"{singer} song: own speech {own:.3f} (rank {rank} of {len(names)}, "
            f"confidence {voice.confidence(own):.2f}); best other speaker {best_other:.3f}"
        )

    print(
        f"\nembedding speed: {audio_seconds:.0f} s of audio in {embed_seconds:.1f} s "
        f"= {audio_seconds / embed_seconds:.1f}x real time (CPU, torch threads as default)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
