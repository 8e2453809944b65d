"""Perceptual image fingerprint built from local features, with geometric verification.

Global perceptual hashes (pHash, PDQ) summarise the whole frame, so they break as soon as the frame
changes: a 20% crop, a mirror image or a 10 degree rotation moves every coefficient. This fingerprint
keeps up to ``MAX_FEATURES`` ORB keypoints (FAST corners with a rotation-invariant binary descriptor,
over an 8-level scale pyramid) of a normalised grey image, and ``compare`` accepts a match only when
enough keypoint correspondences agree on one similarity transform (rotation + uniform scale +
translation, fitted with RANSAC). That makes it robust to:

* resizing and recompression (features are detected on a fixed-size working image, at many scales),
* brightness, contrast and colour changes (grey levels, locally equalised with CLAHE),
* rotation and cropping (the transform absorbs them; a crop keeps most keypoints),
* mirror images (a query fingerprint also carries the features of its mirror image),
* text and logo overlays (they hide a few keypoints; the rest still agree).

Unrelated images rarely produce more than a handful of correspondences that fit one transform, so the
decision threshold sits well above what chance gives (see ``docs/fingerprinting.md`` for figures).

Decoding is defensive: the byte size and the pixel count are checked before any pixel is decoded, and
every failure of the decoder becomes a ``media.errors.MediaError`` subclass.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import math
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, ImageOps

from media import limits
from media.errors import CorruptMedia, MediaTooLarge, UnsupportedMedia

ALGORITHM: Final = "img-orb-ransac-v1"

#: Largest accepted input, in bytes and in pixels. Pillow's own bomb guard is set to the same bound so
#: that nothing else in the process decodes larger images by accident.
MAX_INPUT_BYTES: Final = 64 * 1024 * 1024
MAX_IMAGE_PIXELS: Final = limits.MAX_IMAGE_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

ACCEPTED_FORMATS: Final = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")

#: Longest side of the working image the features are detected on.
WORKING_SIDE: Final = 512
MAX_FEATURES: Final = 500
DESCRIPTOR_BYTES: Final = 32

#: Transparent pixels are laid on mid grey, which keeps both white-on-clear and black-on-clear art visible.
_BACKGROUND_GREY: Final = 128

# Matching parameters. Hamming distances are out of 256 bits.
_MAX_DESCRIPTOR_DISTANCE: Final = 64
_RATIO: Final = 0.8
_MIN_CORRESPONDENCES: Final = 6
_RANSAC_THRESHOLD_PX: Final = 5.0
_RANSAC_ITERATIONS: Final = 2000
_RANSAC_SEED: Final = 20_261_121
_MIN_SCALE: Final = 0.2
_MAX_SCALE: Final = 5.0

#: A match needs at least this many geometrically consistent correspondences. Unrelated real images
#: gave at most 7 in the benchmark (see docs/fingerprinting.md); transformed copies usually give dozens.
MIN_MATCH_INLIERS: Final = 12
# Logistic calibration of inlier count -> probability that the pair is a true match, fitted on the
# benchmark's positive and negative pairs.
_CERTAIN_INLIERS: Final = 4 * MIN_MATCH_INLIERS
_CONFIDENCE_MIDPOINT: Final = 10.0
_CONFIDENCE_SLOPE: Final = 1.0

_FORMAT_MAGIC: Final = b"TIF1"
_HEADER = struct.Struct("<4sHHHH")
_POINT_SCALE: Final = 64.0  # sub-pixel precision of stored coordinates

Points = npt.NDArray[np.float32]
Descriptors = npt.NDArray[np.uint8]
ImageInput = bytes | bytearray | memoryview | Image.Image


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Keypoint positions (pixels of the working image) and their 32-byte ORB descriptors."""

    points: Points
    descriptors: Descriptors

    def __post_init__(self) -> None:
        if self.points.shape != (len(self.descriptors), 2) or self.descriptors.shape[1:] != (
            DESCRIPTOR_BYTES,
        ):
            raise ValueError("points and descriptors do not describe the same keypoints")

    def __len__(self) -> int:
        return len(self.descriptors)

    @classmethod
    def empty(cls) -> FeatureSet:
        return cls(np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_BYTES), np.uint8))


@dataclass(frozen=True, eq=False)
class ImageFingerprint:
    """The fingerprint of one image; store it with ``to_bytes`` (about 10 KB, 20 KB with the mirror).

    ``mirrored`` holds the features of the mirror image, needed only on the query side: comparing a
    query with mirror features to a reference without them still detects mirrored copies.
    """

    width: int
    height: int
    features: FeatureSet
    mirrored: FeatureSet | None = None
    algorithm: str = field(default=ALGORITHM)

    def without_mirror(self) -> ImageFingerprint:
        """The reference form: what an index needs to keep."""
        return ImageFingerprint(self.width, self.height, self.features, None, self.algorithm)

    def nbytes(self) -> int:
        sets = [self.features] if self.mirrored is None else [self.features, self.mirrored]
        return sum(s.points.nbytes + s.descriptors.nbytes for s in sets)

    def to_bytes(self) -> bytes:
        sets = [self.features] if self.mirrored is None else [self.features, self.mirrored]
        parts = [
            _HEADER.pack(
                _FORMAT_MAGIC,
                self.width,
                self.height,
                len(self.features),
                0xFFFF if self.mirrored is None else len(self.mirrored),
            )
        ]
        for feature_set in sets:
            coordinates = np.round(feature_set.points * _POINT_SCALE).clip(0, 0xFFFF).astype("<u2")
            parts.append(coordinates.tobytes())
            parts.append(feature_set.descriptors.tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageFingerprint:
        if len(data) < _HEADER.size:
            raise CorruptMedia("image fingerprint data is truncated")
        magic, width, height, count, mirrored_count = _HEADER.unpack_from(data)
        if magic != _FORMAT_MAGIC:
            raise CorruptMedia(f"not an {ALGORITHM} fingerprint")
        counts = [count] if mirrored_count == 0xFFFF else [count, mirrored_count]
        record = 2 * 2 + DESCRIPTOR_BYTES
        if len(data) != _HEADER.size + record * sum(counts):
            raise CorruptMedia("image fingerprint data has the wrong length")
        offset = _HEADER.size
        sets = []
        for n in counts:
            if n == 0:  # a smooth image (a gradient, a flat colour) has no corners to keep
                sets.append(FeatureSet.empty())
                continue
            coordinates = np.frombuffer(data, "<u2", 2 * n, offset).reshape(n, 2)
            offset += 4 * n
            descriptors = np.frombuffer(data, np.uint8, DESCRIPTOR_BYTES * n, offset).reshape(
                n, DESCRIPTOR_BYTES
            )
            offset += DESCRIPTOR_BYTES * n
            sets.append(FeatureSet((coordinates / _POINT_SCALE).astype(np.float32), descriptors.copy()))
        return cls(width, height, sets[0], sets[1] if len(sets) == 2 else None)

    def to_json(self) -> str:
        return json.dumps(
            {"algorithm": self.algorithm, "data": base64.b64encode(self.to_bytes()).decode("ascii")}
        )

    @classmethod
    def from_json(cls, text: str) -> ImageFingerprint:
        try:
            document: Any = json.loads(text)
            algorithm = document["algorithm"]
            data = base64.b64decode(document["data"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as error:
            raise CorruptMedia("image fingerprint JSON is malformed") from error
        if algorithm != ALGORITHM:
            raise CorruptMedia(f"fingerprint algorithm {algorithm!r} is not {ALGORITHM}")
        return cls.from_bytes(data)


@dataclass(frozen=True)
class ImageMatch:
    """How well a query matches a reference.

    ``score`` is the number of keypoint correspondences consistent with one similarity transform;
    ``confidence`` maps it to a calibrated probability of a true match; ``region`` is the part of the
    reference the query shows, as ``(x, y, w, h)`` fractions of the reference's width and height.
    """

    score: float
    confidence: float
    region: tuple[float, float, float, float] | None
    mirrored: bool

    @property
    def is_match(self) -> bool:
        return self.score >= MIN_MATCH_INLIERS


NO_MATCH: Final = ImageMatch(0.0, 0.0, None, False)


def confidence_for(score: float) -> float:
    """Calibrated probability that a pair with this many inliers is a true match."""
    if score <= 0:
        return 0.0
    return 1.0 / (1.0 + math.exp(-(score - _CONFIDENCE_MIDPOINT) / _CONFIDENCE_SLOPE))


def load_image(data: ImageInput) -> Image.Image:
    """Decode ``data`` into a Pillow image (first frame), refusing hostile or broken input.

    Raises ``UnsupportedMedia`` for bytes that are not an accepted image format, ``MediaTooLarge``
    above ``MAX_INPUT_BYTES`` / ``MAX_IMAGE_PIXELS`` and ``CorruptMedia`` when decoding fails.
    """
    if isinstance(data, Image.Image):
        _check_dimensions(data.width, data.height)
        return data
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UnsupportedMedia(f"expected image bytes or a PIL image, not {type(data).__name__}")
    raw = bytes(data)
    if not raw:
        raise UnsupportedMedia("the image is empty")
    if len(raw) > MAX_INPUT_BYTES:
        raise MediaTooLarge(f"the image is larger than {MAX_INPUT_BYTES} bytes")
    with warnings.catch_warnings():
        # Decoder warnings (odd EXIF, ...) are not errors; a decompression bomb is.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image: Image.Image = Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS)
        except Image.UnidentifiedImageError as error:
            raise UnsupportedMedia("the data is not a supported image format") from error
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise MediaTooLarge("the image has too many pixels") from error
        except Exception as error:
            raise CorruptMedia(f"the image header cannot be read: {error}") from error
        _check_dimensions(image.width, image.height)
        try:
            if image.format == "JPEG":
                # Let libjpeg downscale by a power of two while decoding: far less work for big photos.
                image.draft("RGB", (WORKING_SIDE, WORKING_SIDE))
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise MediaTooLarge("the image has too many pixels") from error
        except Exception as error:
            raise CorruptMedia(f"the image cannot be decoded: {error}") from error
        # A broken orientation tag is not worth rejecting the image for.
        with contextlib.suppress(Exception):
            image = ImageOps.exif_transpose(image)
    return image


def _check_dimensions(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise CorruptMedia("the image has no pixels")
    if width * height > MAX_IMAGE_PIXELS:
        raise MediaTooLarge(f"the image has {width}x{height} pixels, more than {MAX_IMAGE_PIXELS}")


def _to_grey(image: Image.Image) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    try:
        if has_alpha:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (_BACKGROUND_GREY,) * 3 + (255,))
            background.alpha_composite(rgba)
            return background.convert("L")
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            # High bit depth: stretch to 8 bits instead of clipping everything above 255.
            values = np.asarray(image.convert("F"), dtype=np.float32)
            low, high = float(values.min()), float(values.max())
            scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
            return Image.fromarray(scaled.astype(np.uint8))
        return image.convert("L")
    except Exception as error:
        raise CorruptMedia(f"the image cannot be converted: {error}") from error


def _working_image(image: Image.Image) -> npt.NDArray[np.uint8]:
    grey = _to_grey(image)
    scale = WORKING_SIDE / max(grey.width, grey.height)
    size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
    if size != grey.size:
        grey = grey.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    pixels = np.ascontiguousarray(np.asarray(grey, dtype=np.uint8))
    # Local contrast equalisation: brightness and contrast changes barely move the corners it yields,
    # and low-contrast art (soft gradients, faint alpha) gets enough keypoints.
    equaliser = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    return np.asarray(equaliser.apply(pixels), dtype=np.uint8)


def _detect(pixels: npt.NDArray[np.uint8]) -> FeatureSet:
    if min(pixels.shape) < 32:
        return FeatureSet.empty()
    orb = cv2.ORB.create(
        nfeatures=MAX_FEATURES,
        scaleFactor=1.2,
        nlevels=8,
        edgeThreshold=19,
        patchSize=19,
        fastThreshold=8,
    )
    keypoints, descriptors = orb.detectAndCompute(pixels, None)
    if descriptors is None or not keypoints:
        return FeatureSet.empty()
    points = np.array([keypoint.pt for keypoint in keypoints], dtype=np.float32).reshape(-1, 2)
    return FeatureSet(points, np.ascontiguousarray(descriptors, dtype=np.uint8))


def compute(data: ImageInput, *, include_mirror: bool = True) -> ImageFingerprint:
    """Fingerprint an image given as encoded bytes or as a Pillow image.

    ``include_mirror`` adds the features of the mirror image (twice the work and size); queries need
    it to find mirrored copies, references stored in an index do not.
    """
    image = load_image(data)
    pixels = _working_image(image)
    height, width = pixels.shape
    features = _detect(pixels)
    mirrored = _detect(np.ascontiguousarray(pixels[:, ::-1])) if include_mirror else None
    return ImageFingerprint(width, height, features, mirrored)


def _correspondences(query: FeatureSet, reference: FeatureSet) -> tuple[Points, Points]:
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(query.descriptors, reference.descriptors, k=2)
    best: dict[int, tuple[float, int]] = {}
    for pair in pairs:
        if len(pair) < 2:
            continue
        first, second = pair
        if first.distance > _MAX_DESCRIPTOR_DISTANCE or first.distance >= _RATIO * second.distance:
            continue
        # One reference keypoint may serve one query keypoint only: many-to-one matches let a
        # degenerate transform (everything onto one point) collect false inliers.
        held = best.get(first.trainIdx)
        if held is None or first.distance < held[0]:
            best[first.trainIdx] = (first.distance, first.queryIdx)
    if not best:
        empty = np.zeros((0, 2), np.float32)
        return empty, empty
    train = np.fromiter(best.keys(), dtype=np.intp, count=len(best))
    queried = np.fromiter((value[1] for value in best.values()), dtype=np.intp, count=len(best))
    return query.points[queried], reference.points[train]


def _verify(query: FeatureSet, reference: FeatureSet) -> tuple[int, npt.NDArray[np.float64] | None]:
    if len(query) < _MIN_CORRESPONDENCES or len(reference) < _MIN_CORRESPONDENCES:
        return 0, None
    source, target = _correspondences(query, reference)
    if len(source) < _MIN_CORRESPONDENCES:
        return 0, None
    # RANSAC draws from OpenCV's global generator: seed it so that a comparison is reproducible.
    cv2.setRNGSeed(_RANSAC_SEED)
    transform, inlier_mask = cv2.estimateAffinePartial2D(
        source,
        target,
        method=cv2.RANSAC,
        ransacReprojThreshold=_RANSAC_THRESHOLD_PX,
        maxIters=_RANSAC_ITERATIONS,
        confidence=0.995,
    )
    if transform is None or inlier_mask is None:
        return 0, None
    scale = math.sqrt(abs(float(np.linalg.det(transform[:, :2]))))
    if not _MIN_SCALE <= scale <= _MAX_SCALE:
        return 0, None
    return int(inlier_mask.sum()), np.asarray(transform, dtype=np.float64)


def _region(
    query: ImageFingerprint, reference: ImageFingerprint, transform: npt.NDArray[np.float64]
) -> tuple[float, float, float, float] | None:
    corners = np.array(
        [[0, 0, 1], [query.width, 0, 1], [query.width, query.height, 1], [0, query.height, 1]],
        dtype=np.float64,
    )
    mapped = corners @ transform.T
    left = float(np.clip(mapped[:, 0].min() / reference.width, 0.0, 1.0))
    right = float(np.clip(mapped[:, 0].max() / reference.width, 0.0, 1.0))
    top = float(np.clip(mapped[:, 1].min() / reference.height, 0.0, 1.0))
    bottom = float(np.clip(mapped[:, 1].max() / reference.height, 0.0, 1.0))
    if right <= left or bottom <= top:
        return None
    return (round(left, 4), round(top, 4), round(right - left, 4), round(bottom - top, 4))


def compare(query: ImageFingerprint, reference: ImageFingerprint) -> ImageMatch:
    """Compare a query fingerprint with a reference fingerprint.

    The query's mirror features (if present) are tried as well, and so are the reference's when the
    query has none, so a mirrored copy is found whichever side was fingerprinted with the mirror.
    """
    if query.algorithm != reference.algorithm:
        raise ValueError(f"cannot compare {query.algorithm} with {reference.algorithm}")
    trials: list[tuple[FeatureSet, FeatureSet, bool]] = [(query.features, reference.features, False)]
    if query.mirrored is not None:
        trials.append((query.mirrored, reference.features, True))
    elif reference.mirrored is not None:
        trials.append((query.features, reference.mirrored, True))
    best_inliers, best_transform, best_mirrored = 0, None, False
    for query_set, reference_set, mirrored in trials:
        inliers, transform = _verify(query_set, reference_set)
        if inliers > best_inliers:
            best_inliers, best_transform, best_mirrored = inliers, transform, mirrored
        if best_inliers >= _CERTAIN_INLIERS:
            break  # the other orientation cannot change the verdict
    if best_transform is None:
        return NO_MATCH
    region = None
    if best_inliers >= MIN_MATCH_INLIERS:
        if best_mirrored and query.mirrored is None:
            # Features of the reference's mirror image: map back into the reference's own frame.
            flip = np.array([[-1.0, 0.0, reference.width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            best_transform = (flip @ np.vstack([best_transform, [0.0, 0.0, 1.0]]))[:2]
        region = _region(query, reference, best_transform)
    return ImageMatch(float(best_inliers), confidence_for(best_inliers), region, best_mirrored)
