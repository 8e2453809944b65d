"""Benchmark the audio fingerprint (ours) against Chromaprint on real rendered music.

Run on purpose, never from the test suite:

    python -m bench.fingerprint_audio --quick        # about 3 minutes
    python -m bench.fingerprint_audio                # the figures in docs/fingerprinting.md, "Audio"

What it does, all reproducible from the seed:

1. Renders ``--refs + --negatives`` distinct pieces of the music21 corpus with fluidsynth
   (media.samples.audio, cached under var/samples/audio). The first ``--refs`` are indexed; the others
   are never indexed and only ever queried (every match they get is a false positive).
2. Fills the index up to ``--index-size`` tracks with synthetic fingerprints: each copies the frames and spans
   of a real render and draws its hashes from the pooled hashes of all real renders, so posting-list lengths
   (and with them latency, memory and chance collisions) follow the real hash distribution. They are not
   music; the output says how many there are.
3. For every transformation, queries one 5-s excerpt per piece at a seeded random offset, and counts a hit
   when the right reference is returned at the right offset (within 0.25 s, or at a later repeat of the same
   music). Matches between different pieces that share music (Palestrina reuses themes across a mass,
   Bach harmonises one melody many times) are checked on the audio and reported apart.
4. Chooses one threshold on our verified evidence (Chromaprint: similarity) for the whole run at a
   false-positive rate <= 1e-4 per (query, reference) pair, and one with zero false positives, and prints
   recall per transformation at each; for ours also recall and false positives at the platform's fixed
   confidences (0.5 reported, 0.9 claimed). Those reported false positives are also broken down (without
   changing any figure): how many share a passage of at least PASSAGE_S seconds of the same notes with the
   query, how many pair two Palestrina movements, two renders with the same instrument, or a synthetic
   reference.
5. Does the same for Chromaprint (fpcalc -raw), compared by the best bit-error alignment over the real
   references only (fpcalc has no index; 10,000 synthetic Chromaprints would say nothing).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile
from scipy import signal

from media.fingerprint import audio as fingerprint_audio
from media.fingerprint.audio import SAMPLE_RATE_HZ, AudioFingerprint
from media.fingerprint.audio_index import AudioIndex
from media.samples.audio import ensure_system_packages, render_corpus

REPO_ROOT = Path(__file__).resolve().parent.parent
EXCERPT_S = 5.0
OFFSET_TOLERANCE_S = 0.25
TARGET_FPR = 1e-4
# The platform reports audio matches from this confidence (media.services) and claims from this one
# (catalog.tracing); only meaningful for our confidence, not for Chromaprint's similarity.
REPORT_CONFIDENCE = 0.5
CLAIM_CONFIDENCE = 0.9
PASSAGE_S = 2  # consecutive seconds of the same notes that make a "shared passage"


@dataclass
class Transform:
    name: str
    apply: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    time_scale: float = 1.0  # reference seconds per query second


@dataclass
class QueryResult:
    transform: str
    source: str
    is_positive: bool
    offset_s: float
    # Ours: verified evidence (what the confidence is a monotone function of, without its saturation at 1.0);
    # Chromaprint: similarity. For the right reference at the right offset (0 if not), and for the others.
    true_score: float = 0.0
    negative_scores: list[float] = field(default_factory=list)
    true_confidence: float = 0.0
    negative_confidences: list[float] = field(default_factory=list)
    shared_music: int = 0
    # Negatives (ours) at the report confidence whose aligned audio shares a passage with the query (see
    # shares_a_passage): still false positives in every figure, also counted apart.
    passage_confidences: list[float] = field(default_factory=list)
    # Every negative (ours) at the report confidence: (matched reference, confidence).
    reported_negatives: list[tuple[str, float]] = field(default_factory=list)
    repeat_offset: bool = False


# ---------------------------------------------------------------------------------------------- transforms


def _ffmpeg() -> str:
    import imageio_ffmpeg  # type: ignore[import-untyped]

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def ffmpeg_filter(samples: np.ndarray, arguments: list[str], fmt: str = "wav") -> bytes:
    source = io.BytesIO()
    soundfile.write(source, samples, SAMPLE_RATE_HZ, format="WAV", subtype="FLOAT")
    command = [_ffmpeg(), "-v", "error", "-f", "wav", "-i", "pipe:0", *arguments, "-f", fmt, "pipe:1"]
    return subprocess.run(command, input=source.getvalue(), capture_output=True, check=True).stdout


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(samples.astype(np.float64) ** 2))
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), samples.size)
    return (samples + noise).astype(np.float32)


def mp3_64k(samples: np.ndarray) -> np.ndarray:
    """Re-encode at 64 kbit/s (LAME, 44.1 kHz mono) and decode through our own decoder."""
    data = ffmpeg_filter(samples, ["-ar", "44100", "-ac", "1", "-c:a", "libmp3lame", "-b:a", "64k"], "mp3")
    decoded, _ = fingerprint_audio.decode(data)
    return decoded


def change_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster by resampling: tempo and pitch both change, as on a turntable."""
    ratio = Fraction(1 / factor).limit_denominator(400)
    return signal.resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


def change_pitch(samples: np.ndarray, factor: float) -> np.ndarray:
    """Raise pitch by ``factor`` keeping the duration (resample, then WSOLA tempo correction)."""
    rate = round(SAMPLE_RATE_HZ * factor)
    chain = f"asetrate={rate},aresample={SAMPLE_RATE_HZ},atempo={1 / factor:.6f}"
    data = ffmpeg_filter(samples, ["-af", chain])
    return fingerprint_audio.decode(data)[0]


def change_tempo(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster keeping the pitch (ffmpeg's WSOLA atempo)."""
    data = ffmpeg_filter(samples, ["-af", f"atempo={factor:.6f}"])
    return fingerprint_audio.decode(data)[0]


def transforms() -> list[Transform]:
    return [
        Transform("excerpt 5 s, clean", lambda x, _: x),
        Transform("+ noise 20 dB SNR", lambda x, rng: add_noise(x, 20, rng)),
        Transform("+ noise 10 dB SNR", lambda x, rng: add_noise(x, 10, rng)),
        Transform("MP3 64 kbit/s", lambda x, _: mp3_64k(x)),
        Transform("10 dB SNR + MP3 64k", lambda x, rng: mp3_64k(add_noise(x, 10, rng))),
        Transform("speed +3 %", lambda x, _: change_speed(x, 1.03), 1.03),
        Transform("speed -3 %", lambda x, _: change_speed(x, 0.97), 0.97),
        Transform("speed +5 %", lambda x, _: change_speed(x, 1.05), 1.05),
        Transform("speed -5 %", lambda x, _: change_speed(x, 0.95), 0.95),
        Transform("pitch +5 %", lambda x, _: change_pitch(x, 1.05)),
        Transform("pitch -5 %", lambda x, _: change_pitch(x, 0.95)),
        Transform("tempo +5 %", lambda x, _: change_tempo(x, 1.05), 1.05),
        Transform("tempo -5 %", lambda x, _: change_tempo(x, 0.95), 0.95),
    ]


# ---------------------------------------------------------------------------------------------- chromaprint


def chromaprint_of_file(path: Path) -> np.ndarray:
    output = subprocess.run(
        ["fpcalc", "-raw", "-json", "-length", "3600", str(path)], capture_output=True, check=False
    ).stdout
    try:
        values = json.loads(output)["fingerprint"]
    except (ValueError, KeyError):
        return np.zeros(0, dtype=np.uint32)
    return np.asarray(values, dtype=np.uint32)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def chromaprint_best_similarity(query: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """1 - bit error rate at the best alignment of ``query`` inside ``reference`` (and that item offset)."""
    if query.size < 4 or reference.size < query.size:
        return 0.0, 0
    windows = np.lib.stride_tricks.sliding_window_view(reference, query.size)
    errors = _POPCOUNT[(windows ^ query[None, :]).view(np.uint8)].reshape(windows.shape[0], -1).sum(axis=1)
    best = int(np.argmin(errors))
    return 1.0 - float(errors[best]) / (32.0 * query.size), best


CHROMAPRINT_ITEM_S = 0.1238  # fpcalc's default configuration: 4096-sample hop at 11025 Hz / 3


# ---------------------------------------------------------------------------------------------- helpers


def log_spectrogram(samples: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(samples, 1024)[::256] * np.hanning(1024)
    magnitude = np.abs(np.fft.rfft(frames, axis=1))[:, 16:460]
    return np.log(magnitude + 1e-3)


def chroma(samples: np.ndarray) -> np.ndarray:
    """Pitch-class energy per 32-ms frame: equal for the same music on any instrument."""
    frames = np.lib.stride_tricks.sliding_window_view(samples, 2048)[::256] * np.hanning(2048)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    frequencies = np.fft.rfftfreq(2048, 1 / SAMPLE_RATE_HZ)
    usable = (frequencies > 100) & (frequencies < 3000)
    pitch_class = np.mod(np.rint(12 * np.log2(frequencies[usable] / 440.0)), 12).astype(int)
    result = np.zeros((power.shape[0], 12))
    for pc in range(12):
        result[:, pc] = power[:, usable][:, pitch_class == pc].sum(axis=1)
    result = np.log1p(result / (result.mean() + 1e-12))
    return result


def same_music(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two equally long excerpts hold the same notes (chroma correlation >= 0.8)."""
    n = min(a.size, b.size)
    if n < 4096:
        return False
    ca, cb = chroma(a[:n]), chroma(b[:n])
    return bool(np.corrcoef(ca.ravel(), cb.ravel())[0, 1] >= 0.8)


def shares_a_passage(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether PASSAGE_S consecutive seconds of two aligned excerpts hold the same notes (per-second chroma
    correlation >= 0.9), whatever the rest of the excerpt does."""
    n = min(a.size, b.size)
    if n < SAMPLE_RATE_HZ * PASSAGE_S:
        return False
    ca, cb = chroma(a[:n]), chroma(b[:n])
    frames_per_s = SAMPLE_RATE_HZ // 256
    run = 0
    for start in range(0, ca.shape[0] - frames_per_s + 1, frames_per_s):
        x, y = ca[start : start + frames_per_s].ravel(), cb[start : start + frames_per_s].ravel()
        same = x.std() > 0 and y.std() > 0 and np.corrcoef(x, y)[0, 1] >= 0.9
        run = run + 1 if same else 0
        if run >= PASSAGE_S:
            return True
    return False


def synthetic_fingerprints(
    real: list[AudioFingerprint], count: int, rng: np.random.Generator
) -> list[AudioFingerprint]:
    pool = np.concatenate([fp.hashes for fp in real])
    pitch_pool = np.concatenate([fp.peak_pitches for fp in real])
    fakes = []
    for i in range(count):
        template = real[i % len(real)]
        hashes = pool[rng.integers(0, pool.size, template.hashes.size)]
        # Peaks at the template's times with pitches drawn from the pooled real pitches: what verification
        # compares has the real density and pitch distribution, but is not music.
        pitches = pitch_pool[rng.integers(0, pitch_pool.size, template.peak_frames.size)]
        # The spectral envelope of another real render (shared, not copied): music, but not the music the
        # template's times came from.
        donor = real[(i % len(real) + 1 + (i // len(real)) % max(1, len(real) - 1)) % len(real)]
        fakes.append(
            AudioFingerprint(
                hashes=hashes,
                frames=template.frames,
                spans=template.spans,
                duration_s=template.duration_s,
                peak_frames=template.peak_frames,
                peak_pitches=pitches,
                envelope=donor.envelope,
                envelope_tops=donor.envelope_tops,
            )
        )
    return fakes


def threshold_at(negatives: np.ndarray, pair_count: int, rate: float) -> float:
    """Smallest score threshold whose false-positive count over ``pair_count`` pairs is <= rate."""
    allowed = int(np.floor(rate * pair_count))
    ordered = np.sort(negatives)[::-1]
    if ordered.size <= allowed:
        return 0.0
    # Every score strictly above ordered[allowed] is allowed through.
    return float(np.nextafter(ordered[allowed], np.inf))


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small corpus and index: about 3 minutes")
    parser.add_argument("--refs", type=int, default=None, help="real renders indexed")
    parser.add_argument("--negatives", type=int, default=None, help="real renders never indexed")
    parser.add_argument("--index-size", type=int, default=None, help="tracks in the index (synthetic fill)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--samples", type=Path, default=REPO_ROOT / "var" / "samples" / "audio")
    parser.add_argument("--no-chromaprint", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    refs = args.refs or (24 if args.quick else 120)
    negatives = args.negatives or (8 if args.quick else 40)
    index_size = args.index_size or (1000 if args.quick else 10_000)
    use_chromaprint = not args.no_chromaprint and shutil.which("fpcalc") is not None

    ensure_system_packages()
    started = time.perf_counter()
    paths = render_corpus(args.samples, refs + negatives, args.seed)
    print(f"corpus: {len(paths)} rendered pieces ({time.perf_counter() - started:.0f} s)", flush=True)
    reference_paths, negative_paths = paths[:refs], paths[refs:]

    # Fingerprint the references, timing decode + fingerprint from the stored WAV.
    audio: dict[str, np.ndarray] = {}
    real_fps: list[AudioFingerprint] = []
    fp_seconds = decode_seconds = audio_seconds = 0.0
    for path in paths:
        data = path.read_bytes()
        # CPU time, not wall time: other work shares this machine's two cores.
        t0 = time.process_time()
        samples, _ = fingerprint_audio.decode(data)
        t1 = time.process_time()
        fp = fingerprint_audio.compute(samples, SAMPLE_RATE_HZ)
        t2 = time.process_time()
        decode_seconds += t1 - t0
        fp_seconds += t2 - t1
        audio_seconds += samples.size / SAMPLE_RATE_HZ
        audio[path.name] = samples
        if path in reference_paths:
            real_fps.append(fp)
    rng = np.random.default_rng(args.seed)
    index = AudioIndex()
    for path, fp in zip(reference_paths, real_fps, strict=True):
        index.add(path.name, fp)
    synthetic = synthetic_fingerprints(real_fps, max(0, index_size - len(real_fps)), rng)
    for i, fp in enumerate(synthetic):
        index.add(f"synthetic-{i}", fp)
    t0 = time.perf_counter()
    memory = index.memory_bytes()
    build_s = time.perf_counter() - t0
    print(
        f"index: {len(index)} tracks = {len(real_fps)} real renders + {len(synthetic)} synthetic; "
        f"{index.posting_count()} postings, {memory / 2**20:.0f} MiB, built in {build_s:.1f} s",
        flush=True,
    )

    chroma_refs: dict[str, np.ndarray] = {}
    chroma_fp_seconds = 0.0
    if use_chromaprint:
        for path in reference_paths:
            t0 = _children_cpu_s()
            chroma_refs[path.name] = chromaprint_of_file(path)
            chroma_fp_seconds += _children_cpu_s() - t0

    results: list[QueryResult] = []
    chroma_results: list[QueryResult] = []
    latencies: list[float] = []
    cpu_latencies: list[float] = []
    chroma_latencies: list[float] = []
    sources = [(p, True) for p in reference_paths] + [(p, False) for p in negative_paths]
    with tempfile.TemporaryDirectory(prefix="afp-bench-") as work:
        query_wav = Path(work) / "query.wav"
        for t_index, transform in enumerate(transforms()):
            for s_index, (path, is_positive) in enumerate(sources):
                query_rng = np.random.default_rng([args.seed, t_index, s_index])
                samples = audio[path.name]
                duration_s = samples.size / SAMPLE_RATE_HZ
                offset_s = float(query_rng.uniform(0.0, max(0.0, duration_s - EXCERPT_S * 1.1 - 1.5)))
                start = int(offset_s * SAMPLE_RATE_HZ)
                segment = samples[start : start + int((EXCERPT_S * 1.1 + 1.0) * SAMPLE_RATE_HZ)]
                query = transform.apply(segment, query_rng)[: int(EXCERPT_S * SAMPLE_RATE_HZ)]

                query_fp = fingerprint_audio.compute(query, SAMPLE_RATE_HZ, query=True)
                t1, c1 = time.perf_counter(), time.process_time()
                matches = index.query(query_fp, limit=20)
                latencies.append(time.perf_counter() - t1)
                cpu_latencies.append(time.process_time() - c1)
                result = QueryResult(transform.name, path.name, is_positive, offset_s)
                for match in matches:
                    if is_positive and match.ref_id == path.name:
                        # The right piece: a hit at the right offset or at a repeat of the same music; at
                        # another offset it is neither a hit nor a false positive.
                        if abs(match.offset_s - offset_s) <= OFFSET_TOLERANCE_S:
                            result.true_score = max(result.true_score, match.evidence)
                            result.true_confidence = max(result.true_confidence, match.confidence)
                        elif same_music(_excerpt(samples, match.offset_s), _excerpt(samples, offset_s)):
                            result.true_score = max(result.true_score, match.evidence)
                            result.true_confidence = max(result.true_confidence, match.confidence)
                            result.repeat_offset = True
                        continue
                    plausible = match.score >= 6 or match.confidence >= 0.01
                    if isinstance(match.ref_id, str) and match.ref_id in audio and plausible:
                        found = _excerpt(audio[match.ref_id], match.offset_s)
                        if same_music(found, _excerpt(samples, offset_s)):
                            result.shared_music += 1
                            continue
                    if (match.score >= 10 or match.confidence >= 0.1) and os.environ.get("BENCH_DEBUG"):
                        print(
                            f"    negative {match.confidence:.3f} (evidence {match.evidence:.1f}, "
                            f"{match.score} votes) {transform.name} "
                            f"{path.name} -> {match.ref_id} at "
                            f"{match.offset_s:.2f} s x{match.time_scale:.3f} (query at {offset_s:.2f} s)"
                        )
                    result.negative_scores.append(match.evidence)
                    result.negative_confidences.append(match.confidence)
                    if match.confidence >= REPORT_CONFIDENCE:
                        result.reported_negatives.append((str(match.ref_id), match.confidence))
                    if (
                        match.confidence >= REPORT_CONFIDENCE
                        and isinstance(match.ref_id, str)
                        and match.ref_id in audio
                        and shares_a_passage(
                            _excerpt(audio[match.ref_id], match.offset_s), _excerpt(samples, offset_s)
                        )
                    ):
                        result.passage_confidences.append(match.confidence)
                results.append(result)

                if use_chromaprint:
                    soundfile.write(query_wav, query, SAMPLE_RATE_HZ, subtype="PCM_16")
                    t0 = time.perf_counter()
                    query_print = chromaprint_of_file(query_wav)
                    t1 = time.perf_counter()
                    chroma_result = QueryResult(transform.name, path.name, is_positive, offset_s)
                    for name, reference_print in chroma_refs.items():
                        similarity, item = chromaprint_best_similarity(query_print, reference_print)
                        found_s = item * CHROMAPRINT_ITEM_S
                        if name == path.name:
                            if abs(found_s - offset_s) <= 1.0 or same_music(
                                _excerpt(samples, found_s), _excerpt(samples, offset_s)
                            ):
                                chroma_result.true_score = similarity
                            continue
                        if similarity >= 0.7 and same_music(
                            _excerpt(audio[name], found_s), _excerpt(samples, offset_s)
                        ):
                            chroma_result.shared_music += 1
                            continue
                        chroma_result.negative_scores.append(similarity)
                    chroma_latencies.append(time.perf_counter() - t1)
                    chroma_results.append(chroma_result)
            print(f"  done: {transform.name}", flush=True)

    report: dict[str, object] = {
        "corpus": {
            "real_references": len(reference_paths),
            "real_negatives": len(negative_paths),
            "synthetic_references": len(synthetic),
            "index_tracks": len(index),
            "seed": args.seed,
            "excerpt_s": EXCERPT_S,
        },
        "ours": _summarise(
            results,
            pair_count=len(results) * len(index),
            speed_x=audio_seconds / fp_seconds,
            speed_with_decode_x=audio_seconds / (fp_seconds + decode_seconds),
            latencies=latencies,
            cpu_latencies=cpu_latencies,
            memory_bytes=memory,
            index_tracks=len(index),
        ),
    }
    if use_chromaprint:
        report["chromaprint"] = _summarise(
            chroma_results,
            pair_count=len(chroma_results) * len(chroma_refs),
            speed_x=sum(audio[p.name].size for p in reference_paths) / SAMPLE_RATE_HZ / chroma_fp_seconds,
            speed_with_decode_x=None,
            latencies=chroma_latencies,
            cpu_latencies=None,
            memory_bytes=sum(v.nbytes for v in chroma_refs.values()),
            index_tracks=len(chroma_refs),
        )
    _print_report(report)
    print(f"total run time {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _instrument(name: str) -> str:
    """The General MIDI program a render was made with (its name ends in -pNNN.wav)."""
    return name.rsplit("-", 1)[-1]


def _excerpt(samples: np.ndarray, offset_s: float) -> np.ndarray:
    """EXCERPT_S seconds from ``offset_s``; an offset before the start is padded with silence, so that the
    excerpt stays aligned with the query it is compared with."""
    start, length = int(offset_s * SAMPLE_RATE_HZ), int(EXCERPT_S * SAMPLE_RATE_HZ)
    if start >= 0:
        return samples[start : start + length]
    lead = min(-start, length)
    return np.concatenate([np.zeros(lead, dtype=samples.dtype), samples[: length - lead]])


def _summarise(
    results: list[QueryResult],
    *,
    pair_count: int,
    speed_x: float,
    speed_with_decode_x: float | None,
    latencies: list[float],
    cpu_latencies: list[float] | None,
    memory_bytes: int,
    index_tracks: int,
) -> dict[str, object]:
    negatives = np.array([s for r in results for s in r.negative_scores], dtype=np.float64)
    negative_confidences = np.array([c for r in results for c in r.negative_confidences], dtype=np.float64)
    at_fpr = threshold_at(negatives, pair_count, TARGET_FPR)
    zero_fp = float(np.nextafter(negatives.max(), np.inf)) if negatives.size else 0.0
    per_transform: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.transform for r in results):
        positives = [r for r in results if r.transform == name and r.is_positive]
        negative_queries = [r for r in results if r.transform == name and not r.is_positive]
        scores = np.array([r.true_score for r in positives])
        confidences = np.array([r.true_confidence for r in positives])
        per_transform[name] = {
            "queries": len(positives),
            "recall_at_fpr_1e-4": float(np.mean(scores >= at_fpr)) if len(scores) else 0.0,
            "recall_at_zero_fp": float(np.mean(scores >= zero_fp)) if len(scores) else 0.0,
            "recall_at_confidence_0.9": float(np.mean(confidences >= CLAIM_CONFIDENCE))
            if len(scores)
            else 0.0,
            "false_positives_at_confidence_0.5": int(
                sum(
                    c >= REPORT_CONFIDENCE
                    for r in results
                    if r.transform == name
                    for c in r.negative_confidences
                )
            ),
            "median_true_score": float(np.median(scores)) if len(scores) else 0.0,
            "unindexed_queries_matched_at_fpr_1e-4": int(
                sum(any(s >= at_fpr for s in r.negative_scores) for r in negative_queries)
            ),
            "found_at_a_repeat": int(sum(r.repeat_offset for r in positives)),
            "shared_music_matches": int(sum(r.shared_music for r in results if r.transform == name)),
        }
    latency_ms = np.array(latencies) * 1000
    return {
        "threshold_at_fpr_1e-4": at_fpr,
        "threshold_zero_fp": zero_fp,
        "negative_pairs": pair_count,
        "max_negative_score": float(negatives.max()) if negatives.size else 0.0,
        "false_positives_at_confidence_0.5": int(np.sum(negative_confidences >= REPORT_CONFIDENCE)),
        "false_positives_at_confidence_0.9": int(np.sum(negative_confidences >= CLAIM_CONFIDENCE)),
        "false_positives_sharing_a_passage_at_confidence_0.5": sum(
            len(r.passage_confidences) for r in results
        ),
        "false_positives_sharing_a_passage_at_confidence_0.9": sum(
            c >= CLAIM_CONFIDENCE for r in results for c in r.passage_confidences
        ),
        "false_positives_at_confidence_0.5_between_palestrina_movements": sum(
            r.source.startswith("palestrina") and ref.startswith("palestrina")
            for r in results
            for ref, _ in r.reported_negatives
        ),
        "false_positives_at_confidence_0.5_same_instrument": sum(
            _instrument(r.source) == _instrument(ref) for r in results for ref, _ in r.reported_negatives
        ),
        "false_positives_at_confidence_0.5_synthetic": sum(
            ref.startswith("synthetic-") for r in results for ref, _ in r.reported_negatives
        ),
        "transforms": per_transform,
        "fingerprint_speed_x_realtime": speed_x,
        "fingerprint_speed_with_decode_x_realtime": speed_with_decode_x,
        "query_latency_ms_median": float(np.median(latency_ms)),
        "query_latency_ms_p95": float(np.percentile(latency_ms, 95)),
        "query_cpu_ms_median": float(np.median(cpu_latencies) * 1000) if cpu_latencies else None,
        "query_cpu_ms_p95": float(np.percentile(cpu_latencies, 95) * 1000) if cpu_latencies else None,
        "index_tracks": index_tracks,
        "index_memory_mib": memory_bytes / 2**20,
    }


def _print_report(report: dict[str, object]) -> None:
    corpus = report["corpus"]
    assert isinstance(corpus, dict)
    print()
    print(
        f"Index: {corpus['index_tracks']} tracks ({corpus['real_references']} real renders + "
        f"{corpus['synthetic_references']} synthetic fingerprints); {corpus['real_negatives']} more real "
        f"renders never indexed; one {corpus['excerpt_s']:.0f}-s excerpt per piece and transformation."
    )
    systems = [name for name in ("ours", "chromaprint") if name in report]
    header = (
        "| transformation | "
        + " | ".join(f"{s} recall @FPR<=1e-4 | {s} recall @0 FP" for s in systems)
        + " |"
    )
    print(header)
    print("|" + "---|" * (1 + 2 * len(systems)))
    first = report[systems[0]]
    assert isinstance(first, dict)
    for name in first["transforms"]:
        cells = []
        for system in systems:
            summary = report[system]
            assert isinstance(summary, dict)
            figures = summary["transforms"][name]
            cells.append(f"{figures['recall_at_fpr_1e-4']:.3f} | {figures['recall_at_zero_fp']:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for system in systems:
        summary = report[system]
        assert isinstance(summary, dict)
        extra = summary["fingerprint_speed_with_decode_x_realtime"]
        speed = summary["fingerprint_speed_x_realtime"]
        print(
            f"{system}: thresholds {summary['threshold_at_fpr_1e-4']:.3f} (FPR<=1e-4 over "
            f"{summary['negative_pairs']} pairs) / {summary['threshold_zero_fp']:.3f} (zero FP; max negative "
            f"{summary['max_negative_score']:.3f}); fingerprinting {speed:.0f}x real time CPU"
            + (f" ({extra:.0f}x with WAV decode)" if extra else " (fpcalc, with decode)")
            + f"; query {summary['query_latency_ms_median']:.1f} ms median, "
            f"{summary['query_latency_ms_p95']:.1f} ms p95 wall"
            + (
                f" ({summary['query_cpu_ms_median']:.1f} / {summary['query_cpu_ms_p95']:.1f} ms CPU)"
                if summary["query_cpu_ms_median"] is not None
                else ""
            )
            + f" over {summary['index_tracks']} tracks; "
            f"index {summary['index_memory_mib']:.1f} MiB"
        )
        transforms_summary = summary["transforms"]
        repeats = sum(v["found_at_a_repeat"] for v in transforms_summary.values())
        shared = sum(v["shared_music_matches"] for v in transforms_summary.values())
        unindexed = sum(v["unindexed_queries_matched_at_fpr_1e-4"] for v in transforms_summary.values())
        if system == "ours":
            claimed = ", ".join(
                f"{figures['recall_at_confidence_0.9']:.3f}" for figures in transforms_summary.values()
            )
            print(
                f"  confidence >= 0.9 (claim): recall per transformation {claimed}; "
                "false positives over the run: "
                f"{summary['false_positives_at_confidence_0.5']} at >= 0.5, "
                f"{summary['false_positives_at_confidence_0.9']} at >= 0.9; of these, sharing a passage "
                f"(>= {PASSAGE_S} s of the same notes at the found alignment): "
                f"{summary['false_positives_sharing_a_passage_at_confidence_0.5']} / "
                f"{summary['false_positives_sharing_a_passage_at_confidence_0.9']}; between two Palestrina "
                "movements: "
                f"{summary['false_positives_at_confidence_0.5_between_palestrina_movements']} at >= 0.5; "
                f"same instrument: {summary['false_positives_at_confidence_0.5_same_instrument']}; "
                f"synthetic references: {summary['false_positives_at_confidence_0.5_synthetic']}"
            )
        print(
            f"  {repeats} positives found at a repeat of the same music; {shared} matches between different "
            f"pieces verified as shared music (not counted as false); {unindexed} unindexed queries matched "
            f"at the FPR<=1e-4 threshold"
        )


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
