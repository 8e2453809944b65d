"""A learned voice separator tried in front of the speaker embedding for voices over music (issue: voice
claims over music), kept as a benchmark because it does not yet make those claims reliable.

A speaker embedding of a vocal mixed over music is an embedding of the mix. With the music's share of each
time-frequency cell known (an oracle ratio mask) the bench's mixes are found again at an equal error rate
of about 3%, so the work is in estimating that mask from the mix alone. Here a small network (three dense
layers, about 0.4 M weights) reads the mix's log-mel spectrogram around each frame (frames up to 0.32 s
either side) and gives each STFT bin the share that belongs to the voice. It is trained with torch (CPU;
installed with resemblyzer) on rendered speech laid over music21 pieces rendered with a dozen General
MIDI instruments (pieces outside the first 200 of the corpus list, which the benchmark's pieces come
from), at vocal-to-music ratios drawn from -15 to +6 dB, with a loss on compressed magnitudes; inference
is numpy. ``bench.voice_over_music --learned`` trains one separator per half of the speakers and scores
each speaker's mixes with the separator that never heard that speaker.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import soundfile

from media.samples import audio

SAMPLE_RATE_HZ: Final = 16_000
N_FFT: Final = 1024
HOP: Final = 256
MEL_BANDS: Final = 64
# Frames around the one masked that the network reads (at 16 ms a frame: up to 0.32 s either side).
CONTEXT: Final = (-20, -12, -6, -3, -1, 0, 1, 3, 6, 12, 20)
BINS: Final = N_FFT // 2 + 1
FEATURES: Final = MEL_BANDS * len(CONTEXT)

Signal = npt.NDArray[np.float32]


def stft(samples: Signal) -> npt.NDArray[np.complex64]:
    """Frames x bins; Hann window, frames centred on multiples of HOP (the signal reflected at the ends)."""
    padded = np.pad(
        samples.astype(np.float32), N_FFT // 2, mode="reflect" if len(samples) > N_FFT else "constant"
    )
    count = 1 + max(0, (len(padded) - N_FFT) // HOP)
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(count, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0])
    )
    return np.fft.rfft(frames * _window(), axis=1).astype(np.complex64)


def istft(spectrum: npt.NDArray[np.complex64], length: int) -> Signal:
    """The inverse of ``stft`` by weighted overlap-add."""
    frames = np.fft.irfft(spectrum, n=N_FFT, axis=1) * _window()
    total = N_FFT + HOP * (len(frames) - 1)
    out = np.zeros(total, dtype=np.float64)
    norm = np.zeros(total, dtype=np.float64)
    square = _window() ** 2
    for index, frame in enumerate(frames):
        start = index * HOP
        out[start : start + N_FFT] += frame
        norm[start : start + N_FFT] += square
    out /= np.maximum(norm, 1e-8)
    return out[N_FFT // 2 : N_FFT // 2 + length].astype(np.float32)


def features(magnitude: npt.NDArray[np.float32], mel: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Each frame's network input: the log-mel spectrum of the frames in CONTEXT, normalised per recording
    (so the level of the recording does not matter)."""
    log_mel = np.log(magnitude**2 @ mel.T + 1e-8)
    log_mel = (log_mel - log_mel.mean()) / (log_mel.std() + 1e-6)
    count = len(log_mel)
    columns = [log_mel[np.clip(np.arange(count) + offset, 0, count - 1)] for offset in CONTEXT]
    return np.concatenate(columns, axis=1).astype(np.float32)


@dataclass(frozen=True)
class Separator:
    """The mask network's weights: dense layers with ReLU between them and a sigmoid at the end."""

    layers: tuple[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]], ...]
    mel: npt.NDArray[np.float32]

    def mask(self, magnitude: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        hidden = features(magnitude, self.mel)
        for index, (weight, bias) in enumerate(self.layers):
            hidden = hidden @ weight + bias
            if index < len(self.layers) - 1:
                np.maximum(hidden, 0.0, out=hidden)
        return (1.0 / (1.0 + np.exp(-hidden))).astype(np.float32)


@dataclass(frozen=True)
class Separated:
    vocal: Signal
    voice_share: float  # the fraction of the recording's energy the mask keeps


def separate(samples: Signal, separator: Separator) -> Separated:
    """The voice in `samples` (mono, SAMPLE_RATE_HZ) with the music masked out, and the share kept."""
    spectrum = stft(samples)
    magnitude = np.abs(spectrum).astype(np.float32)
    mask = separator.mask(magnitude)
    total = float(np.sum(magnitude**2))
    kept = float(np.sum((mask * magnitude) ** 2))
    vocal = istft((mask * spectrum).astype(np.complex64), len(samples))
    return Separated(vocal=vocal, voice_share=kept / total if total > 0 else 0.0)


_window_cache: dict[int, npt.NDArray[np.float64]] = {}


def _window() -> npt.NDArray[np.float64]:
    window = _window_cache.get(N_FFT)
    if window is None:
        window = _window_cache[N_FFT] = np.hanning(N_FFT + 1)[:N_FFT]
    return window


# Training ----------------------------------------------------------------------------------------------

PROGRAMS = (0, 24, 40, 48, 19, 56, 73, 33, 4, 11, 25, 68)
FIRST_TRAINING_PIECE = 200
HIDDEN = 256


def load_mono(path: Path) -> np.ndarray:
    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != SAMPLE_RATE_HZ:
        import librosa

        mono = librosa.resample(mono, orig_sr=rate, target_sr=SAMPLE_RATE_HZ)
    return mono.astype(np.float32)


def training_music(cache: Path, count: int, seed: int = 7) -> list[Path]:
    """`count` rendered pieces from past the first FIRST_TRAINING_PIECE of the corpus, instruments in turn."""
    pool = audio.corpus_score_paths()[FIRST_TRAINING_PIECE:]
    random.Random(seed).shuffle(pool)
    pieces: list[Path] = []
    for corpus_path in pool:
        if len(pieces) == count:
            break
        try:
            pieces.append(
                audio.render_piece(corpus_path, cache, program=PROGRAMS[len(pieces) % len(PROGRAMS)])
            )
        except audio.RenderError:
            continue
    return pieces


def mixtures(
    voices: Sequence[np.ndarray], music: Sequence[np.ndarray], per_clip: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, mixture magnitudes and voice magnitudes of every frame of the training mixtures."""
    inputs, mixed_mags, voice_mags = [], [], []
    mel = _mel()
    for clip in voices:
        for _ in range(per_clip):
            piece = music[int(rng.integers(len(music)))]
            start = int(rng.integers(0, max(1, len(piece) - len(clip))))
            excerpt = np.resize(piece[start : start + len(clip)], len(clip))
            draw = rng.random()
            if draw < 0.05:
                vocal, backing = clip, np.zeros_like(clip)
            elif draw < 0.10:
                vocal, backing = np.zeros_like(clip), excerpt
            else:
                ratio_db = rng.uniform(-15.0, 6.0)
                gain = np.sqrt(
                    np.mean(clip**2) / (max(float(np.mean(excerpt**2)), 1e-12) * 10 ** (ratio_db / 10))
                )
                vocal, backing = clip, gain * excerpt
            level = 10 ** (rng.uniform(-20.0, 0.0) / 20) / max(float(np.abs(vocal + backing).max()), 1e-6)
            vocal_spec = stft((vocal * level).astype(np.float32))
            mixed_spec = vocal_spec + stft((backing * level).astype(np.float32))
            magnitude = np.abs(mixed_spec).astype(np.float32)
            inputs.append(features(magnitude, mel))
            mixed_mags.append(magnitude.astype(np.float16))
            voice_mags.append(np.abs(vocal_spec).astype(np.float16))
    return np.concatenate(inputs), np.concatenate(mixed_mags), np.concatenate(voice_mags)


def train(
    voices: Sequence[np.ndarray], music: Sequence[np.ndarray], *, epochs: int = 10, seed: int = 2026
) -> Separator:
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    inputs, mixed, voiced = mixtures(voices, music, per_clip=2, rng=rng)
    model = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, BINS),
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs)
    x_all = torch.from_numpy(inputs)
    mixed_all = torch.from_numpy(mixed.astype(np.float32)) ** 0.3
    voiced_all = torch.from_numpy(voiced.astype(np.float32)) ** 0.3
    for epoch in range(epochs):
        order = torch.randperm(len(x_all))
        total = 0.0
        for start in range(0, len(order), 512):
            batch = order[start : start + 512]
            mask = torch.sigmoid(model(x_all[batch]))
            # Compressed magnitudes: (mask |X|)^0.3 against |S|^0.3, so quiet bins count too.
            loss = torch.mean((mask**0.3 * mixed_all[batch] - voiced_all[batch]) ** 2)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        schedule.step()
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(order):.5f}", flush=True)
    linear = [layer for layer in model if isinstance(layer, torch.nn.Linear)]
    layers = tuple(
        (layer.weight.detach().numpy().T.astype(np.float32), layer.bias.detach().numpy().astype(np.float32))
        for layer in linear
    )
    return Separator(layers=layers, mel=_mel())


def _mel() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE_HZ, n_fft=N_FFT, n_mels=MEL_BANDS).astype(np.float32)
