from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from media.fingerprint.image import compute
from media.fingerprint.image_index import BANDS, ImageIndex, band_keys


def _crop_20(image: Image.Image) -> Image.Image:
    width, height = image.size
    return image.crop((round(0.1 * width), round(0.1 * height), round(0.9 * width), round(0.9 * height)))


def _with_caption(image: Image.Image) -> Image.Image:
    captioned = image.copy()
    ImageDraw.Draw(captioned).text((20, image.height * 2 // 3), "remixed by a model", fill=(255, 255, 255))
    return captioned


def _index_of(image_samples) -> ImageIndex[str]:
    index: ImageIndex[str] = ImageIndex()
    for name, image in image_samples.items():
        index.add(name, compute(image, include_mirror=False))
    return index


def test_query_finds_the_original_of_each_transformed_copy(image_samples):
    index = _index_of(image_samples)

    for name, image in image_samples.items():
        for query in (_crop_20(image), ImageOps.mirror(image), image.rotate(10), _with_caption(image)):
            results = index.query(compute(query), limit=3)

            assert [ref_id for ref_id, _ in results] == [name]
            assert results[0][1].is_match


def test_query_with_an_unindexed_image_returns_nothing(image_samples):
    index: ImageIndex[str] = ImageIndex()
    for name in ("Aqua", "Dune", "Garden", "LadyBird"):
        index.add(name, compute(image_samples[name], include_mirror=False))

    for name in ("FreshFlower", "RainDrops", "TwoWings", "Wood"):
        assert index.query(compute(image_samples[name])) == []


def test_removed_reference_is_no_longer_returned(image_samples):
    index = _index_of(image_samples)
    query = compute(_crop_20(image_samples["Dune"]))

    assert index.remove("Dune") is True

    assert "Dune" not in index
    assert len(index) == len(image_samples) - 1
    assert index.query(query) == []
    assert index.remove("Dune") is False
    assert index.fingerprint("Dune") is None


def test_re_adding_an_id_replaces_its_fingerprint(image_samples):
    index: ImageIndex[str] = ImageIndex()
    index.add("work-1", compute(image_samples["Aqua"], include_mirror=False))

    index.add("work-1", compute(image_samples["Wood"], include_mirror=False))

    assert len(index) == 1
    assert index.query(compute(image_samples["Aqua"])) == []
    assert [ref_id for ref_id, _ in index.query(compute(image_samples["Wood"]))] == ["work-1"]


def test_index_stays_correct_across_merges_and_compaction(image_samples):
    index = _index_of(image_samples)
    names = sorted(image_samples)
    index.query(compute(image_samples[names[0]]))  # settles the first additions into the main run

    for name in names[:5]:
        index.remove(name)
    for name in names[:2]:
        index.add(name, compute(image_samples[name], include_mirror=False))

    assert sorted(index) == sorted(names[:2] + names[5:])
    for name in names:
        found = [ref_id for ref_id, _ in index.query(compute(_crop_20(image_samples[name])))]
        assert found == ([name] if name in index else [])


def test_limit_caps_the_number_of_results(image_samples):
    index: ImageIndex[str] = ImageIndex()
    fingerprint = compute(image_samples["Garden"], include_mirror=False)
    for copy in range(4):
        index.add(f"copy-{copy}", fingerprint)

    results = index.query(compute(image_samples["Garden"]), limit=2)

    assert len(results) == 2
    assert {ref_id for ref_id, _ in results} <= {f"copy-{copy}" for copy in range(4)}
    assert index.query(compute(image_samples["Garden"]), limit=0) == []


def test_memory_grows_with_each_reference(image_samples):
    index: ImageIndex[str] = ImageIndex()
    assert index.memory_bytes() == 0

    index.add("one", compute(image_samples["Aqua"], include_mirror=False))
    one = index.memory_bytes()
    index.add("two", compute(image_samples["Dune"], include_mirror=False))

    assert index.memory_bytes() > one > 0


def test_band_keys_tag_each_band_so_equal_values_in_different_bands_differ():
    descriptors = np.zeros((2, 32), dtype=np.uint8)

    keys = band_keys(descriptors)

    assert len(keys) == 2 * BANDS
    assert len(set(keys.tolist())) == BANDS
