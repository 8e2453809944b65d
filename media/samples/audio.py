"""Real music for tests and benchmarks, rendered reproducibly from registry packages.

Scores come from the corpus that ships inside the ``music21`` package (Bach chorales, Palestrina, folk
collections, ...). Each score is exported to MIDI, given a General MIDI instrument chosen from the seed, and
rendered by the Debian ``fluidsynth`` synthesiser with the ``FluidR3_GM`` soundfont. The result is cached as
a mono 16-bit WAV so a second run costs nothing.

Some corpus encodings are licensed for non-commercial use only: these renders are test data, never
shipped content.

fluidsynth 2.3 can keep rendering some MIDI files forever (notes that never end). Every render therefore
gets "all sound off" and "reset all controllers" on every channel just after the last event, runs under a
wall-clock timeout and a file-size limit, and is trimmed to the length of the score.

CLI: ``python -m media.samples.audio DEST --count N [--seed S]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SAMPLE_RATE_HZ = 22050
MIN_DURATION_S = 20.0
MAX_DURATION_S = 120.0
# Corpus files above this size are long multi-movement works: slow to parse and render, and one of them
# would dominate a corpus of short pieces.
MAX_SCORE_FILE_BYTES = 120_000
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn")

SOUNDFONT_CANDIDATES = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
    Path("/usr/share/sounds/sf3/MuseScore_General.sf3"),
)
SYSTEM_PACKAGES = ("fluidsynth", "fluid-soundfont-gm")

# General MIDI programs that sound like real ensembles and keep pitched partials (no drums, no FX).
GM_PROGRAMS = (
    0,  # acoustic grand piano
    6,  # harpsichord
    19,  # church organ
    24,  # nylon guitar
    40,  # violin
    42,  # cello
    48,  # string ensemble
    52,  # choir aahs
    56,  # trumpet
    68,  # oboe
    71,  # clarinet
    73,  # flute
)

# Controller numbers of the channel-mode messages that silence a channel and reset its state.
_CC_ALL_SOUND_OFF = 120
_CC_RESET_ALL_CONTROLLERS = 121
_PERCUSSION_CHANNEL = 10


class RenderError(RuntimeError):
    """A score could not be turned into audio (parse, export or synthesis failed)."""


def find_soundfont() -> Path | None:
    for candidate in SOUNDFONT_CANDIDATES:
        if candidate.is_file():
            return candidate
    return None


def ensure_system_packages() -> None:
    """Install fluidsynth and a General MIDI soundfont with apt-get when either is missing."""
    if shutil.which("fluidsynth") and find_soundfont() is not None:
        return
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        raise RenderError(
            "fluidsynth and a General MIDI soundfont are needed: apt-get install " + " ".join(SYSTEM_PACKAGES)
        )
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt_get, "install", "-y", "-qq", "--no-install-recommends", *SYSTEM_PACKAGES]
    if subprocess.run(install, env=environment, capture_output=True, check=False).returncode != 0:
        # The package lists may be missing on a fresh machine: refresh them once and retry.
        subprocess.run([apt_get, "update", "-qq"], env=environment, capture_output=True, check=True)
        subprocess.run(install, env=environment, capture_output=True, check=True)
    if not shutil.which("fluidsynth") or find_soundfont() is None:
        raise RenderError("apt-get ran but fluidsynth or the soundfont is still missing")


def corpus_score_paths() -> list[str]:
    """Corpus-relative paths of the single-score files, sorted so that a seed always means the same list."""
    from music21 import corpus

    root = _corpus_root()
    paths = []
    for path in corpus.getPaths():
        absolute = Path(str(path))
        if absolute.suffix.lower() in SCORE_SUFFIXES and absolute.stat().st_size <= MAX_SCORE_FILE_BYTES:
            paths.append(absolute.relative_to(root).as_posix())
    return sorted(paths)


def _corpus_root() -> Path:
    import music21

    return Path(music21.__file__).resolve().parent / "corpus"


def _slug(corpus_path: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "-", corpus_path.rsplit(".", 1)[0]).strip("-").lower()
    digest = hashlib.sha256(corpus_path.encode()).hexdigest()[:6]
    return f"{stem[:60]}-{digest}"


def render_piece(
    corpus_path: str,
    dest_dir: Path,
    *,
    program: int = 0,
    max_duration_s: float = MAX_DURATION_S,
    timeout_s: float = 120.0,
) -> Path:
    """Render one corpus score to ``dest_dir`` (cached) and return the WAV path.

    Raises RenderError when the score cannot be parsed or rendered, or is shorter than MIN_DURATION_S.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{_slug(corpus_path)}-p{program:03d}.wav"
    if target.is_file():
        return target
    soundfont = find_soundfont()
    fluidsynth = shutil.which("fluidsynth")
    if soundfont is None or fluidsynth is None:
        raise RenderError("fluidsynth or soundfont missing: call ensure_system_packages() first")

    midi_bytes, duration_s = _score_to_midi(corpus_path, program)
    if duration_s < MIN_DURATION_S:
        raise RenderError(f"{corpus_path} lasts {duration_s:.1f} s, under {MIN_DURATION_S} s")
    duration_s = min(duration_s, max_duration_s)

    with tempfile.TemporaryDirectory(prefix="render-") as work:
        midi_path = Path(work) / "score.mid"
        wav_path = Path(work) / "render.wav"
        midi_path.write_bytes(midi_bytes)
        # Stereo 16-bit at our rate, plus slack for the release tails; a file growing past that means a note
        # that never ends. (RLIMIT_FSIZE is no use: fluidsynth trips it while loading the soundfont.)
        limit_bytes = int((duration_s + 30.0) * SAMPLE_RATE_HZ * 2 * 2) + 65536
        command = [
            fluidsynth,
            "-n",
            "-i",
            "-q",
            "-g",
            "0.7",
            "-r",
            str(SAMPLE_RATE_HZ),
            "-O",
            "s16",
            "-T",
            "wav",
            "-F",
            str(wav_path),
            str(soundfont),
            str(midi_path),
        ]
        _run_bounded(command, wav_path, limit_bytes=limit_bytes, timeout_s=timeout_s, what=corpus_path)
        if not wav_path.is_file() or wav_path.stat().st_size < 1024:
            raise RenderError(f"fluidsynth produced no audio for {corpus_path}")
        samples = _read_mono(wav_path)

    keep = int((duration_s + 1.0) * SAMPLE_RATE_HZ)  # one second of release after the last note
    samples = samples[:keep]
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak < 1e-4:
        raise RenderError(f"{corpus_path} rendered silent")
    samples = samples * (0.9 / peak)

    import soundfile

    partial = target.with_suffix(".part")
    soundfile.write(str(partial), samples.astype(np.float32), SAMPLE_RATE_HZ, subtype="PCM_16", format="WAV")
    partial.replace(target)
    return target


def _run_bounded(command: list[str], output: Path, *, limit_bytes: int, timeout_s: float, what: str) -> None:
    """Run ``command``; kill it when it outlives ``timeout_s`` or ``output`` grows past ``limit_bytes``."""
    deadline = time.monotonic() + timeout_s
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        while process.poll() is None:
            too_large = output.is_file() and output.stat().st_size > limit_bytes
            if too_large or time.monotonic() > deadline:
                process.kill()
                process.wait()
                reason = "wrote too much audio" if too_large else "timed out"
                raise RenderError(f"fluidsynth {reason} on {what}")
            time.sleep(0.05)


def _read_mono(path: Path) -> np.ndarray:
    import soundfile

    data, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono: np.ndarray = data.mean(axis=1)
    return mono


def _score_to_midi(corpus_path: str, program: int) -> tuple[bytes, float]:
    """Parse a corpus score and return (MIDI bytes with a silencing tail, score duration in seconds)."""
    from music21 import corpus, midi, stream

    try:
        with warnings.catch_warnings():
            # Encoding quirks (overfull measures, ...) are repaired by music21 and warned about; the render
            # must not depend on the caller's warning filters.
            warnings.simplefilter("ignore")
            score = corpus.parse(corpus_path)
    except Exception as error:  # music21 raises many unrelated types on odd encodings
        raise RenderError(f"cannot parse {corpus_path}: {error}") from error
    if not isinstance(score, stream.Score):
        raise RenderError(f"{corpus_path} is not a single score")
    try:
        duration_s = _score_seconds(score)
        midi_file = midi.translate.streamToMidiFile(score)
    except Exception as error:
        raise RenderError(f"cannot export {corpus_path} to MIDI: {error}") from error

    for track in midi_file.tracks:
        channels: set[int] = set()
        for event in track.events:
            if event.type == midi.ChannelVoiceMessages.PROGRAM_CHANGE:
                event.data = program
            if event.channel is not None and event.isNoteOn():
                channels.add(event.channel)
        _append_silencing_tail(track, channels, midi_file.ticksPerQuarterNote)
    return midi_file.writestr(), duration_s


def _append_silencing_tail(track: object, channels: set[int], ticks_per_quarter: int) -> None:
    """Insert all-sound-off and reset-all-controllers half a beat after the track's last event."""
    from music21 import midi

    assert isinstance(track, midi.MidiTrack)
    events = track.events
    end_index = next(
        (i for i, event in enumerate(events) if event.type == midi.MetaEvents.END_OF_TRACK), len(events)
    )
    # The end-of-track event is preceded by its own delta time; insert ours before that pair.
    insert_at = (
        end_index - 1 if end_index > 0 and isinstance(events[end_index - 1], midi.DeltaTime) else end_index
    )
    tail: list[midi.MidiEvent | midi.DeltaTime] = []
    delay = ticks_per_quarter // 2
    for channel in sorted(channels):
        if channel == _PERCUSSION_CHANNEL:
            continue
        for controller in (_CC_ALL_SOUND_OFF, _CC_RESET_ALL_CONTROLLERS):
            delta = midi.DeltaTime(track, time=delay, channel=channel)
            message = midi.MidiEvent(track, type=midi.ChannelVoiceMessages.CONTROLLER_CHANGE, channel=channel)
            message.parameter1 = controller
            message.parameter2 = 0
            tail.extend((delta, message))
            delay = 0
    events[insert_at:insert_at] = tail
    track.updateEvents()


def _score_seconds(score: object) -> float:
    from music21 import stream

    assert isinstance(score, stream.Score)
    seconds = 0.0
    for start_ql, end_ql, mark in score.metronomeMarkBoundaries():
        bpm = mark.getQuarterBPM() or 120.0
        seconds += (end_ql - start_ql) * 60.0 / bpm
    return seconds


def render_corpus(dest_dir: Path | str, count: int, seed: int = 0, *, skip: int = 0) -> list[Path]:
    """Render ``count`` distinct corpus pieces chosen by ``seed`` (cached in ``dest_dir``), in a stable order.

    ``skip`` drops that many usable pieces from the front of the seeded order, so that callers can ask
    for disjoint sets with the same seed. Pieces that fail once are remembered in ``failed.txt`` and never
    retried.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    failed_log = dest / "failed.txt"
    failed = set(failed_log.read_text().split()) if failed_log.is_file() else set()
    order = corpus_score_paths()
    random.Random(seed).shuffle(order)
    rendered: list[Path] = []
    usable = 0
    for corpus_path in order:
        if len(rendered) >= count:
            break
        program = GM_PROGRAMS[random.Random(f"{seed}:{corpus_path}").randrange(len(GM_PROGRAMS))]
        key = f"{corpus_path}#p{program}"
        if key in failed:
            continue
        try:
            path = render_piece(corpus_path, dest, program=program)
        except RenderError:
            failed.add(key)
            with failed_log.open("a") as log:
                log.write(key + "\n")
            continue
        usable += 1
        if usable > skip:
            rendered.append(path)
    return rendered


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render music21 corpus pieces to WAV with fluidsynth.")
    parser.add_argument("dest", type=Path)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--no-install", action="store_true", help="do not apt-get install missing packages")
    args = parser.parse_args(argv)
    if not args.no_install:
        ensure_system_packages()
    for path in render_corpus(args.dest, args.count, args.seed, skip=args.skip):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
