"""Benchmark of the image fingerprint against pHash (imagehash) and PDQ (pdqhash), on real images.

    python -m bench.fingerprint_image            # full run (~325 images)
    python -m bench.fingerprint_image --quick    # small corpus, a minute or two

Corpus: the images of ``media.samples.images`` (Debian wallpapers and Wesnoth art), decoded once,
transparent pixels laid on mid grey, longest side limited to 1024 px. With a fixed seed, ``--queries``
of them are originals that get transformed and queried; every image (originals and the rest, the
distractors) is a reference in the index.

Each transformation below is applied to every original; the transformed copy is the query, its
original the one true reference. Crops cut 20% of the width and 20% of the height in total (keeping
64% of the area), split between the two sides at a seeded random ratio.

Figures per algorithm and transformation:
* recall@FPR<=1e-4: scores of all (query, other reference) pairs of that transformation set a
  threshold with at most 1e-4 false positive pairs; the share of true pairs above it.
* recall@0FP: the threshold is above every false pair of every transformation in the run.
* ours@default: recall with the shipped decision rule (``ImageMatch.is_match`` on index results),
  and the false positives it gave. Our scores come from the index: a pair the index does not return
  scores 0, as in production.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from media.fingerprint import image as fingerprint
from media.fingerprint.image_index import ImageIndex
from media.samples.images import DEFAULT_CACHE_DIR, ensure_images

SEED = 20261121
MAX_SIDE = 1024
FPR_TARGET = 1e-4

#: Groups of different files that are one artwork (recoloured, repainted in part, or with figures added
#: or removed), checked by eye. A hit inside a group is a correct match of derived art, so such a pair
#: is neither a true nor a false pair here; the run counts those hits separately.
KNOWN_DERIVED: tuple[tuple[str, ...], ...] = (
    ("dwarves/gryphon-rider.png", "monsters/gryphon.png", "undead/zombie-gryphon.png"),
    ("undead/zombie-rider.png", "undead/zombie-horse.png"),
    ("monsters/bat.png", "undead/zombie-bat.png"),
    ("humans/grand-knight.png", "humans/grand-knight-2.png"),
    ("humans/mage-white.png", "humans/mage-white+female.png"),
    ("monsters/big-icemonax.png", "monsters/small-icemonax.png"),
    ("monsters/fire_wraith_A.png", "monsters/fire_guardian.png"),
    ("monsters/giant_ant.png", "monsters/fire_ant.png"),
    # scorpion-elder shares the claws and tail of scorpion (added after the --limit 5 run, see the docs).
    ("monsters/scorpion.png", "monsters/scorpion-elder.png", "monsters/scuttler.png"),
    ("nagas/naga-mace_warrior1.png", "nagas/naga-mace_warrior2.png", "nagas/naga-mace_warrior3.png"),
    ("orcs/ruler.png", "orcs/ruler-2.png"),
    ("story/landscape-battlefield.jpg", "story/landscape-battlefield_nohumans.jpg"),
    ("story/landscape-bridge.jpg", "story/landscape-bridge_sun.jpg"),
    # Colour renditions of one wallpaper design.
    (
        "Ubuntu-Mate-Cold-no-logo.png",
        "Ubuntu-Mate-Warm-no-logo.png",
        "Ubuntu-Mate-Radioactive-no-logo.png",
        "Ubuntu-Mate-Dark-no-logo.png",
    ),
    ("MATE-Stripes-Light.png", "MATE-Stripes-Dark.png"),
)

Transform = Callable[[Image.Image, random.Random], Image.Image]


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _crop20(image: Image.Image, rng: random.Random) -> Image.Image:
    width, height = image.size
    left = rng.uniform(0.0, 0.2)
    top = rng.uniform(0.0, 0.2)
    box = (
        round(width * left),
        round(height * top),
        round(width * (left + 0.8)),
        round(height * (top + 0.8)),
    )
    return image.crop(box)


def _colour(image: Image.Image, rng: random.Random) -> Image.Image:
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + 25) % 256  # hue turned by about 35 degrees
    shifted = Image.fromarray(hsv, "HSV").convert("RGB")
    return ImageEnhance.Color(shifted).enhance(1.5)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def _text(image: Image.Image, rng: random.Random) -> Image.Image:
    result = image.copy()
    draw = ImageDraw.Draw(result)
    width, height = result.size
    size = max(10, height // 12)
    caption = rng.choice([f"AI remix #{rng.randint(1, 999)}", "generated with a model", "(c) someone else"])
    y = round(height * rng.uniform(0.55, 0.8))
    draw.text(
        (width // 20, y),
        caption,
        fill=(255, 255, 255),
        font=_font(size),
        stroke_width=2,
        stroke_fill=(0, 0, 0),
    )
    draw.text((width // 20, y + size + 4), "tribute bench", fill=(255, 230, 0), font=_font(size // 2))
    return result


def _logo(image: Image.Image, rng: random.Random) -> Image.Image:
    width, height = image.size
    side = max(16, round(min(width, height) * 0.22))
    logo = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(logo)
    draw.ellipse((0, 0, side - 1, side - 1), fill=(200, 30, 60, 200), outline=(255, 255, 255, 255), width=3)
    draw.rectangle((side // 4, side // 3, 3 * side // 4, 2 * side // 3), fill=(255, 255, 255, 220))
    draw.text((side // 4 + 2, side // 3 + 2), "AI", fill=(20, 20, 20, 255), font=_font(side // 4))
    corner = rng.choice([(0, 0), (width - side, 0), (0, height - side), (width - side, height - side)])
    margin = max(2, side // 10)
    x = min(max(corner[0], margin), width - side - margin)
    y = min(max(corner[1], margin), height - side - margin)
    result = image.convert("RGBA")
    result.alpha_composite(logo, (max(0, x), max(0, y)))
    return result.convert("RGB")


TRANSFORMS: dict[str, Transform] = {
    "resize 50%": lambda im, rng: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
    "jpeg q30": lambda im, rng: _jpeg(im, 30),
    "brightness +30%": lambda im, rng: ImageEnhance.Brightness(im).enhance(1.3),
    "hue+saturation": _colour,
    "rotate 5": lambda im, rng: im.rotate(5, resample=Image.Resampling.BICUBIC),
    "rotate 10": lambda im, rng: im.rotate(10, resample=Image.Resampling.BICUBIC),
    "mirror": lambda im, rng: ImageOps.mirror(im),
    "text overlay": _text,
    "logo overlay": _logo,
    "crop 20%": _crop20,
    "crop 20% + jpeg q30": lambda im, rng: _jpeg(_crop20(im, rng), 30),
    "mirror + crop 20%": lambda im, rng: ImageOps.mirror(_crop20(im, rng)),
}


def load_corpus(paths: list[Path]) -> list[Image.Image]:
    images = []
    for path in paths:
        with Image.open(path) as opened:
            opened.draft("RGB", (MAX_SIDE, MAX_SIDE))
            rgba = opened.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        background.alpha_composite(rgba)
        image = background.convert("RGB")
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        images.append(image)
    return images


@dataclass
class Scores:
    """Scores of true pairs and of every false pair, per transformation (higher = more similar)."""

    positives: dict[str, list[float]] = field(default_factory=dict)
    negatives: dict[str, list[float]] = field(default_factory=dict)
    # Negatives that are implicit zeros (pairs the index did not return) are counted, not stored.
    implicit_zero_negatives: dict[str, int] = field(default_factory=dict)
    hash_seconds: float = 0.0
    hashed: int = 0
    query_seconds: float = 0.0
    queried: int = 0
    memory_bytes: int = 0
    extra: dict[str, str] = field(default_factory=dict)


def _threshold_at_fpr(negatives: np.ndarray, total_negatives: int, fpr: float) -> float:
    """Lowest threshold t (score > t is a match) keeping false positives <= fpr * total."""
    allowed = math.floor(fpr * total_negatives)
    ordered = np.sort(negatives)[::-1]
    if len(ordered) <= allowed:
        return -math.inf if len(ordered) == 0 else float(ordered[-1]) - 1e-9
    return float(ordered[allowed])


class HashAnchor:
    """A global hash (pHash or PDQ) with a linear scan: score = bits - Hamming distance."""

    def __init__(self, name: str, bits: int, hasher: Callable[[Image.Image], np.ndarray]) -> None:
        self.name = name
        self.bits = bits
        self.hasher = hasher
        self.matrix: np.ndarray | None = None

    def build(self, images: list[Image.Image], scores: Scores) -> None:
        start = time.perf_counter()
        rows = [self.hasher(image) for image in images]
        scores.hash_seconds += time.perf_counter() - start
        scores.hashed += len(images)
        self.matrix = np.array(rows, dtype=bool)
        scores.memory_bytes = len(images) * self.bits // 8

    def scores(self, query: Image.Image, scores: Scores) -> np.ndarray:
        assert self.matrix is not None
        start = time.perf_counter()
        bits = self.hasher(query)
        result = self.bits - (self.matrix != bits).sum(axis=1)
        scores.query_seconds += time.perf_counter() - start
        scores.queried += 1
        return result.astype(np.float64)


def _phash(image: Image.Image) -> np.ndarray:
    import imagehash

    return np.asarray(imagehash.phash(image).hash, dtype=bool).reshape(-1)


def _pdq(image: Image.Image) -> np.ndarray:
    import pdqhash

    vector, _quality = pdqhash.compute(np.asarray(image.convert("RGB")))
    return np.asarray(vector, dtype=bool)


def run(arguments: argparse.Namespace) -> int:
    paths = ensure_images(arguments.cache)
    rng = random.Random(SEED)
    if arguments.quick:
        paths = sorted(rng.sample(paths, min(len(paths), 100)))
    started = time.perf_counter()
    images = load_corpus(paths)
    decode_s = time.perf_counter() - started
    print(f"corpus: {len(images)} real images from {arguments.cache} (decoded in {decode_s:.0f} s)")
    query_count = min(len(images), arguments.queries or (40 if arguments.quick else 150))
    originals = sorted(random.Random(SEED + 1).sample(range(len(images)), query_count))
    print(
        f"originals queried: {len(originals)}; distractors: {len(images) - len(originals)}; "
        f"transformations: {len(TRANSFORMS)}"
    )

    related: dict[int, set[int]] = {i: set() for i in range(len(paths))}
    for group in KNOWN_DERIVED:
        members = [i for i, path in enumerate(paths) if path.as_posix().endswith(group)]
        for i in members:
            related[i].update(j for j in members if j != i)

    names = ["ours", "pHash", "PDQ"]
    results = {name: Scores() for name in names}

    # Our index.
    ours = results["ours"]
    index: ImageIndex[int] = ImageIndex()
    start = time.perf_counter()
    cpu_start = time.process_time()
    for ref_id, image in enumerate(images):
        index.add(ref_id, fingerprint.compute(image, include_mirror=False))
    ours.hash_seconds = time.perf_counter() - start
    cpu_rate = len(images) / (time.process_time() - cpu_start)
    ours.extra["reference hashing, CPU time"] = f"{cpu_rate:.0f} images/s"
    ours.hashed = len(images)
    ours.memory_bytes = index.memory_bytes()
    # Hashing speed from encoded JPEG bytes (decode included), with the mirror (query form).
    encoded = []
    for image in images[:50]:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        encoded.append(buffer.getvalue())
    start = time.perf_counter()
    cpu_start = time.process_time()
    for data in encoded:
        fingerprint.compute(data)
    ours.extra["query-form hashing (with mirror) from JPEG bytes"] = (
        f"{len(encoded) / (time.perf_counter() - start):.0f} images/s wall, "
        f"{len(encoded) / (time.process_time() - cpu_start):.0f} images/s CPU"
    )

    anchors = [HashAnchor("pHash", 64, _phash), HashAnchor("PDQ", 256, _pdq)]
    for anchor in anchors:
        anchor.build(images, results[anchor.name])

    transform_rng = random.Random(SEED + 2)
    derived_hits: list[str] = []
    for transform_name, transform in TRANSFORMS.items():
        for scores in results.values():
            scores.positives[transform_name] = []
            scores.negatives[transform_name] = []
            scores.implicit_zero_negatives[transform_name] = 0
        for original in originals:
            query = transform(images[original], transform_rng)
            # Ours: fingerprint with mirror, index lookup, verification of the candidates.
            start = time.perf_counter()
            query_fp = fingerprint.compute(query)
            found = index.query(query_fp, limit=arguments.limit)
            ours.query_seconds += time.perf_counter() - start
            ours.queried += 1
            got = {ref_id: match.score for ref_id, match in found}
            ours.positives[transform_name].append(got.get(original, 0.0))
            excluded = {original, *related[original]}
            negative_scores = [score for ref_id, score in got.items() if ref_id not in excluded]
            ours.negatives[transform_name].extend(negative_scores)
            ours.implicit_zero_negatives[transform_name] += len(images) - len(excluded) - len(negative_scores)
            for ref_id, score in got.items():
                if ref_id in related[original]:
                    derived_hits.append(f"{transform_name}: {paths[original].name} -> {paths[ref_id].name}")
                elif ref_id != original:
                    print(f"  FALSE MATCH ({transform_name}): {paths[original]} -> {paths[ref_id]} {score=}")
            others = np.array([i for i in range(len(images)) if i not in excluded])
            for anchor in anchors:
                scores = results[anchor.name]
                row = anchor.scores(query, scores)
                scores.positives[transform_name].append(float(row[original]))
                scores.negatives[transform_name].extend(row[others].tolist())
        print(f"  done: {transform_name}", file=sys.stderr)

    report(results, len(images))
    print(
        f"ours: {len(derived_hits)} hits between known derived artworks (not counted): "
        + "; ".join(sorted(set(derived_hits))[:12])
    )
    print(f"total run time {time.perf_counter() - started:.0f} s")
    return 0


def report(results: dict[str, Scores], catalog_size: int) -> None:
    transform_names = list(TRANSFORMS)
    pooled_max: dict[str, float] = {}
    for name, scores in results.items():
        all_negatives = [s for values in scores.negatives.values() for s in values]
        pooled_max[name] = max(all_negatives) if all_negatives else 0.0
    header = f"{'transformation':<22}"
    header += "".join(f"{name + ' @1e-4':>14}{name + ' @0FP':>13}" for name in results)
    header += f"{'ours is_match':>15}"
    print()
    print(header)
    print("-" * len(header))
    total_false = 0
    for transform_name in transform_names:
        cells = []
        for _name, scores in results.items():
            positives = np.array(scores.positives[transform_name])
            negatives = np.array(scores.negatives[transform_name])
            zeros = scores.implicit_zero_negatives[transform_name]
            total = len(negatives) + zeros
            if zeros:
                negatives = np.concatenate([negatives, np.zeros(zeros)])
            threshold = _threshold_at_fpr(negatives, total, FPR_TARGET)
            recall_fpr = float((positives > threshold).mean())
            recall_zero = float((positives > pooled_max[_name]).mean())
            cells.append(f"{recall_fpr:>14.3f}{recall_zero:>13.3f}")
        ours = results["ours"]
        shipped = float((np.array(ours.positives[transform_name]) >= fingerprint.MIN_MATCH_INLIERS).mean())
        false = sum(1 for s in ours.negatives[transform_name] if s >= fingerprint.MIN_MATCH_INLIERS)
        total_false += false
        print(f"{transform_name:<22}" + "".join(cells) + f"{shipped:>10.3f} FP={false}")
    print()
    for name, scores in results.items():
        hash_rate = scores.hashed / scores.hash_seconds if scores.hash_seconds else float("nan")
        query_ms = 1000 * scores.query_seconds / scores.queried if scores.queried else float("nan")
        print(
            f"{name:<6} hashing {hash_rate:6.0f} images/s (decoded, <=1024 px) | query {query_ms:6.1f} ms "
            f"| index memory {scores.memory_bytes / 1024:8.1f} KiB for {catalog_size} images "
            f"| highest false-pair score {pooled_max[name]:.0f}"
        )
        for key, value in scores.extra.items():
            print(f"       {key}: {value}")
    threshold = fingerprint.MIN_MATCH_INLIERS
    print(f"ours: false matches at the shipped threshold (score >= {threshold}): {total_false}")
    for name, scores in results.items():
        failed = {t: int((np.array(scores.positives[t]) <= pooled_max[name]).sum()) for t in transform_names}
        print(f"{name}: misses at 0FP per transformation: {failed}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100 images, 40 originals")
    parser.add_argument("--queries", type=int, default=0, help="originals to transform and query")
    parser.add_argument("--limit", type=int, default=1, help="results per index query")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE_DIR)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
