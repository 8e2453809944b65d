"""Registration speed on the product path: how fast an uploaded track is fingerprinted and checked for claims
at catalogue scale, and whether copies of registered tracks still open their claims.

Run on purpose, never from the test suite:

    python -m bench.registration --tracks 1000     # a few minutes
    python -m bench.registration                   # 10,000 tracks in the audio index
    python -m bench.registration --whole           # the claim check querying whole tracks, for comparison

What it does, all reproducible from the seed:

1. Renders ``--registered + --new`` distinct pieces of the music21 corpus with fluidsynth
   (media.samples.audio, cached under var/samples/audio; the same seed and order as
   bench.fingerprint_audio). In a fresh SQLite database, a composer registers the first ``--registered`` as
   audio works (stored and fingerprinted by the platform's own functions); the ``--new`` others are never
   registered. Two of the new ones are also joined into medleys of about ``--medley-s`` seconds: long tracks,
   real music.
2. Fills the audio index of this process up to ``--tracks`` with synthetic fingerprints (see
   bench.fingerprint_audio.synthetic_fingerprints: real frames and spans, hashes drawn from the pooled hashes
   of the real renders, so posting lists grow with the catalogue as real ones do). Rendering 10,000 real
   pieces would take hours here; the fill is not music and is never queried, only queried against. The
   output says how many tracks are real.
3. Another creator uploads, as FLAC files, every new piece and medley, and a copy of every
   ``--copies``-th registered piece (with noise at 20 dB SNR, as MP3 at 64 kbit/s), and each is
   registered by the upload task's own body (catalog.fingerprinting.asset_fingerprint: fingerprint, then
   the claim check), timed in CPU seconds of this process (other work shares the machine's cores).
4. Prints registration speed in times real time (overall and the slowest track), the claim check's share of
   the time, how many window queries the claim checks ran, whether each copy opened its claim on the right
   work, and whether any new track opened a claim (a false claim).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Registered:
    label: str
    duration_s: float
    cpu_s: float
    claim_check_s: float
    windows: int
    claimed_work_ids: list[int]
    expected_work_id: int | None


def _flac(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="FLAC")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tracks", type=int, default=10_000, help="tracks in the audio index (synthetic fill)"
    )
    parser.add_argument("--registered", type=int, default=24, help="real renders registered")
    parser.add_argument("--new", type=int, default=16, help="real renders never registered, uploaded new")
    parser.add_argument("--copies", type=int, default=2, help="upload a copy of every N-th registered render")
    parser.add_argument("--medley-s", type=float, default=390.0, help="length of the two long medleys")
    parser.add_argument("--whole", action="store_true", help="the claim check queries whole tracks")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--samples", type=Path, default=ROOT / "var" / "samples" / "audio")
    args = parser.parse_args(argv)

    sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
    from bench.django_env import django_setup
    from bench.fingerprint_audio import add_noise, ffmpeg_filter, synthetic_fingerprints
    from media.fingerprint import audio
    from media.fingerprint.audio_index import AudioIndex
    from media.samples.audio import ensure_system_packages, render_corpus

    ensure_system_packages()
    started = time.perf_counter()
    paths = render_corpus(args.samples, args.registered + args.new, args.seed)
    print(f"corpus: {len(paths)} rendered pieces ({time.perf_counter() - started:.0f} s)", flush=True)
    registered_paths, new_paths = paths[: args.registered], paths[args.registered :]

    django_setup(tempfile.mkdtemp(prefix="tribute-bench-registration-"))
    from accounts.services import user_create
    from catalog import fingerprinting, services
    from catalog.models import Claim, WorkKind
    from matching import index
    from matching import services as matching_services

    if args.whole:  # one window as long as any track, every posting read: the check before it was bounded
        matching_services.CLAIM_WINDOW_S = 1e9
        matching_services.CLAIM_POSTINGS_PER_S = 0

    composer = user_create(
        username="composer", email="c@bench.invalid", password=None, role="creator", email_verified=True
    )
    uploader = user_create(
        username="uploader", email="u@bench.invalid", password=None, role="creator", email_verified=True
    )
    samples: dict[Path, np.ndarray] = {}
    originals: list[tuple[Path, int]] = []
    real_fingerprints = []
    started = time.perf_counter()
    for path in registered_paths:
        decoded, _ = audio.decode(path.read_bytes())
        samples[path] = decoded
        work = services.work_create(user=composer, title=path.stem, kind=WorkKind.AUDIO)
        upload = services.asset_upload(
            work=work, user=composer, data=path.read_bytes(), filename=path.name, fingerprint_later=False
        )
        matching_services.fingerprints_compute(
            sha256=upload.asset.blob_id, data=path.read_bytes(), kinds=["audio"], progress=lambda _: None
        )
        originals.append((path, work.pk))
        real_fingerprints.append(audio.compute(decoded, audio.SAMPLE_RATE_HZ))
    for path in new_paths:
        samples[path] = audio.decode(path.read_bytes())[0]
    indexes = index.current()
    fill = max(0, args.tracks - len(indexes.audio))
    rng = np.random.default_rng(args.seed)
    for number, fake in enumerate(synthetic_fingerprints(real_fingerprints, fill, rng)):
        indexes.audio.add(f"synthetic-{number}", fake)
    indexes.audio.posting_count()  # merge the additions now, not in the first timed query
    print(
        f"catalogue: {len(indexes.audio)} tracks in the audio index ({len(registered_paths)} real renders "
        f"registered on the product path, {fill} synthetic fingerprints), {indexes.audio.posting_count():,} "
        f"postings, built in {time.perf_counter() - started:.0f} s",
        flush=True,
    )

    # New pieces are uploaded as rendered (WAV); the medleys as FLAC at the renders' rate; the copies as MP3.
    uploads: list[tuple[str, bytes, int | None]] = []
    for path in new_paths:
        uploads.append((f"new {path.stem}", path.read_bytes(), None))
    for number in range(2):
        joined: list[np.ndarray] = []
        rate = 0
        for path in new_paths[number::2]:
            part, rate = soundfile.read(path, dtype="float32")
            joined.append(part if part.ndim == 1 else part.mean(axis=1))
            if sum(p.size for p in joined) >= args.medley_s * rate:
                break
        medley = np.concatenate(joined)[: round(args.medley_s * rate)]
        uploads.append((f"new medley {number + 1}", _flac(medley, rate), None))
    mp3 = ["-ar", "44100", "-ac", "1", "-c:a", "libmp3lame", "-b:a", "64k"]
    for path, work_id in originals[:: max(1, args.copies)]:
        copy = ffmpeg_filter(add_noise(samples[path], 20.0, rng), mp3, "mp3")
        uploads.append((f"copy {path.stem}", copy, work_id))

    # Time the claim check and count its window queries inside the task's body (the product's functions,
    # wrapped here only to measure them).
    claim_seconds = [0.0]
    window_queries = [0]
    claims_open_for = fingerprinting.claims_open_for
    query = AudioIndex.query

    def timed_claims(**kwargs: object) -> object:
        t0 = time.process_time()
        try:
            return claims_open_for(**kwargs)  # type: ignore[arg-type]
        finally:
            claim_seconds[0] += time.process_time() - t0

    def counted_query(self: AudioIndex, *a: object, **kw: object) -> object:
        window_queries[0] += 1
        return query(self, *a, **kw)  # type: ignore[arg-type]

    fingerprinting.claims_open_for = timed_claims  # type: ignore[assignment]
    AudioIndex.query = counted_query  # type: ignore[assignment,method-assign]
    results: list[Registered] = []
    for label, data, expected in uploads:
        work = services.work_create(user=uploader, title=label, kind=WorkKind.AUDIO)
        upload = services.asset_upload(
            work=work, user=uploader, data=data, filename="upload.flac", fingerprint_later=False
        )
        claim_seconds[0], window_queries[0] = 0.0, 0
        t0 = time.process_time()
        fingerprinting.asset_fingerprint(asset_id=upload.asset.pk)
        cpu = time.process_time() - t0
        claims = Claim.objects.filter(subject_asset=upload.asset).select_related("work")
        claimed = [claim.work_id for claim in claims]
        titles = [f"{claim.work.title} ({claim.confidence:.2f})" for claim in claims]
        duration = soundfile.info(io.BytesIO(data)).duration
        results.append(
            Registered(label, duration, cpu, claim_seconds[0], window_queries[0], claimed, expected)
        )
        print(
            f"  {label:60s} {duration:6.0f} s  {duration / cpu:7.0f}x  claim check {claim_seconds[0]:6.2f} s "
            f"({window_queries[0]} queries)  claims {titles}",
            flush=True,
        )
    _report(results, args.tracks, args.whole)
    return 0


def _report(results: list[Registered], tracks: int, whole: bool) -> None:
    audio_s = sum(r.duration_s for r in results)
    cpu_s = sum(r.cpu_s for r in results)
    slowest = min(results, key=lambda r: r.duration_s / r.cpu_s)
    claim_s = sum(r.claim_check_s for r in results)
    copies = [r for r in results if r.expected_work_id is not None]
    found = [r for r in copies if r.expected_work_id in r.claimed_work_ids]
    false = [r for r in results if any(w != r.expected_work_id for w in r.claimed_work_ids)]
    new = [r for r in results if r.expected_work_id is None]
    print()
    print(f"claim check: {'whole tracks' if whole else 'bounded windows'}; {tracks:,} tracks in the index")
    print(
        f"registration: {len(results)} tracks, {audio_s / 60:.1f} min of audio in {cpu_s:.1f} CPU s: "
        f"{audio_s / cpu_s:.0f}x real time overall; slowest {slowest.duration_s / slowest.cpu_s:.0f}x "
        f"({slowest.label}, {slowest.duration_s:.0f} s in {slowest.cpu_s:.2f} s)"
    )
    print(f"claim check: {100 * claim_s / cpu_s:.0f}% of the time")
    for kind, group in (("new tracks", new), ("copies", copies)):
        if group:
            speed = sum(r.duration_s for r in group) / sum(r.cpu_s for r in group)
            worst = min(r.duration_s / r.cpu_s for r in group)
            queries = [r.windows for r in group]
            print(
                f"  {kind}: {speed:.0f}x overall, slowest {worst:.0f}x; window queries per track "
                f"{min(queries)}-{max(queries)} (mean {np.mean(queries):.1f})"
            )
    print(f"copies that opened their claim: {len(found)} of {len(copies)}")
    print(f"tracks with a claim on a work they do not copy: {len(false)}")


if __name__ == "__main__":
    raise SystemExit(main())
