from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable

import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from media.errors import CorruptMedia, MediaError, MediaTooLarge, UnsupportedMedia
from media.fingerprint import image as fingerprint
from media.fingerprint.image import ImageFingerprint, compare, compute


def _jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _crop_20(image: Image.Image) -> Image.Image:
    # Cut 20% of the width and of the height: 5% left, 15% right, 12% top, 8% bottom.
    width, height = image.size
    return image.crop((round(0.05 * width), round(0.12 * height), round(0.85 * width), round(0.92 * height)))


TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "crop_20_percent": _crop_20,
    "mirror": ImageOps.mirror,
    "rotate_10_degrees": lambda image: image.rotate(10, resample=Image.Resampling.BICUBIC),
    "jpeg_quality_30": lambda image: Image.open(io.BytesIO(_jpeg_bytes(image, 30))),
    "brightness_plus_30_percent": lambda image: ImageEnhance.Brightness(image).enhance(1.3),
    "mirror_and_crop": lambda image: ImageOps.mirror(_crop_20(image)),
}


@pytest.mark.parametrize("transform_name", sorted(TRANSFORMS))
def test_transformed_copy_matches_its_original(image_samples, transform_name):
    transform = TRANSFORMS[transform_name]
    for name in ("LadyBird", "Dune", "Garden"):
        original = image_samples[name]
        reference = compute(_jpeg_bytes(original), include_mirror=False)

        match = compare(compute(transform(original)), reference)

        assert match.is_match, f"{name} {transform_name}: {match}"
        assert match.confidence > 0.99
        assert match.mirrored == transform_name.startswith("mirror")


def test_crop_reports_the_region_of_the_reference_it_shows(image_samples):
    original = image_samples["Garden"]
    reference = compute(original, include_mirror=False)

    match = compare(compute(_crop_20(original)), reference)

    assert match.region is not None
    x, y, w, h = match.region
    assert x == pytest.approx(0.05, abs=0.02)
    assert y == pytest.approx(0.12, abs=0.02)
    assert w == pytest.approx(0.80, abs=0.03)
    assert h == pytest.approx(0.80, abs=0.03)


def test_mirrored_copy_is_found_when_only_the_reference_has_mirror_features(image_samples):
    original = image_samples["Wood"]
    reference = compute(original, include_mirror=True)

    match = compare(compute(ImageOps.mirror(original), include_mirror=False), reference)

    assert match.is_match
    assert match.mirrored is True
    assert match.region is not None
    assert match.region[2] > 0.9


def test_unrelated_real_images_do_not_match(image_samples):
    fingerprints = {name: compute(image) for name, image in image_samples.items()}

    for query_name, query in fingerprints.items():
        for reference_name, reference in fingerprints.items():
            if query_name == reference_name:
                continue
            match = compare(query, reference.without_mirror())
            assert not match.is_match, f"{query_name} matched {reference_name}: {match}"
            assert match.region is None
            assert match.confidence < 0.5


def test_fingerprint_round_trips_through_bytes_and_json(image_samples):
    original = compute(image_samples["Aqua"])

    from_bytes = ImageFingerprint.from_bytes(original.to_bytes())
    from_json = ImageFingerprint.from_json(original.to_json())

    for restored in (from_bytes, from_json):
        assert (restored.width, restored.height) == (original.width, original.height)
        assert restored.algorithm == fingerprint.ALGORITHM
        assert (restored.features.descriptors == original.features.descriptors).all()
        assert abs(restored.features.points - original.features.points).max() <= 1 / 64
        assert restored.mirrored is not None and original.mirrored is not None
        assert (restored.mirrored.descriptors == original.mirrored.descriptors).all()
        assert compare(restored, original).score == compare(original, original).score
    assert ImageFingerprint.from_bytes(original.without_mirror().to_bytes()).mirrored is None


@pytest.mark.parametrize(
    "data",
    [b"", b"TIF1", b"XXXX" + bytes(8), b"TIF1" + struct.pack("<HHHH", 10, 10, 5, 0xFFFF) + bytes(10)],
    ids=["empty", "header_only", "wrong_magic", "short_body"],
)
def test_damaged_fingerprint_bytes_raise_corrupt_media(data):
    with pytest.raises(CorruptMedia):
        ImageFingerprint.from_bytes(data)


def test_fingerprint_json_from_another_algorithm_is_refused():
    with pytest.raises(CorruptMedia):
        ImageFingerprint.from_json('{"algorithm": "img-other-v9", "data": ""}')
    with pytest.raises(CorruptMedia):
        ImageFingerprint.from_json("not json")


def test_the_same_bytes_always_give_the_same_fingerprint(image_samples):
    data = _jpeg_bytes(image_samples["RainDrops"])

    assert compute(data).to_bytes() == compute(data).to_bytes()


def test_error_codes_are_stable():
    assert MediaError.code == "media_error"
    assert UnsupportedMedia.code == "unsupported_media"
    assert CorruptMedia.code == "corrupt_media"
    assert MediaTooLarge.code == "media_too_large"
    assert issubclass(MediaError, ValueError)


def test_html_renamed_as_image_is_unsupported():
    html = b"<!DOCTYPE html><html><head><title>photo.png</title></head><body>Not found</body></html>"

    with pytest.raises(UnsupportedMedia):
        compute(html)


@pytest.mark.parametrize(
    "data", [b"", b"\x00" * 100, b"GIF8", b"%PDF-1.7\n"], ids=["empty", "zeros", "gif_magic", "pdf"]
)
def test_non_image_bytes_are_unsupported(data):
    with pytest.raises(UnsupportedMedia):
        compute(data)


def test_truncated_jpeg_is_corrupt(image_samples):
    data = _jpeg_bytes(image_samples["Dune"])

    with pytest.raises(CorruptMedia):
        compute(data[: len(data) // 2])


def test_truncated_png_is_corrupt(image_samples):
    data = _png_bytes(image_samples["Dune"].resize((200, 120)))

    with pytest.raises(CorruptMedia):
        compute(data[: len(data) - 200])


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("width", "height"),
    [(10_000, 10_000), (200_000, 200_000), (1, 100_000_000)],
    ids=["over_limit", "decompression_bomb", "absurd_strip"],
)
def test_huge_dimensions_are_refused_before_decoding(width, height):
    with pytest.raises(MediaTooLarge):
        compute(_png_header_only(width, height))


def test_oversized_input_is_refused():
    with pytest.raises(MediaTooLarge):
        compute(b"\xff\xd8\xff" + bytes(fingerprint.MAX_INPUT_BYTES))


def test_huge_pil_image_is_refused_without_work():
    class Huge(Image.Image):
        @property
        def size(self) -> tuple[int, int]:
            return (100_000, 100_000)

    with pytest.raises(MediaTooLarge):
        compute(Huge())


def test_randomly_damaged_images_raise_only_media_errors(image_samples):
    small = image_samples["LadyBird"].resize((160, 100))
    sources = [_jpeg_bytes(small), _png_bytes(small)]
    rng = random.Random(7)
    outcomes = {"ok": 0, "error": 0}
    for case in range(60):
        data = bytearray(sources[case % 2])
        for _ in range(rng.randint(1, 12)):
            data[rng.randrange(16, len(data))] = rng.randrange(256)
        if case % 3 == 0:
            del data[rng.randrange(20, len(data)) :]
        try:
            compute(bytes(data))
        except MediaError:
            outcomes["error"] += 1
        else:
            outcomes["ok"] += 1
    assert outcomes["ok"] + outcomes["error"] == 60


def test_flat_and_tiny_images_give_fingerprints_that_match_nothing(image_samples):
    flat = compute(Image.new("RGB", (800, 600), (40, 90, 160)))
    tiny = compute(Image.new("RGB", (3, 2), (255, 0, 0)))
    photo = compute(image_samples["Aqua"])

    assert len(flat.features) == 0
    assert len(tiny.features) == 0
    assert compare(flat, photo) == fingerprint.NO_MATCH
    assert compare(photo, tiny) == fingerprint.NO_MATCH


def test_transparent_and_unusual_modes_are_fingerprinted(image_samples):
    photo = image_samples["FreshFlower"].resize((400, 250))
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 200))
    sixteen_bit = photo.convert("L").point(lambda value: value * 200, "I")
    palette = photo.convert("P")
    drawn = Image.new("LA", (300, 300), (0, 0))
    ImageDraw.Draw(drawn).ellipse((40, 40, 260, 260), fill=(255, 255))
    reference = compute(photo, include_mirror=False)

    for variant in (rgba, palette):
        assert compare(compute(_png_bytes(variant)), reference).is_match
    assert compare(compute(sixteen_bit), reference).is_match
    assert len(compute(_png_bytes(drawn)).features) > 0


def test_an_image_without_corners_round_trips_and_matches_nothing() -> None:
    import io

    from PIL import Image

    from media.fingerprint import image

    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((640, 400)).convert("RGB").save(buffer, "PNG")
    fingerprint = image.compute(buffer.getvalue())
    assert len(fingerprint.features) == 0

    restored = image.ImageFingerprint.from_bytes(fingerprint.to_bytes())

    assert restored.to_bytes() == fingerprint.to_bytes()
    assert not image.compare(restored, restored).is_match
