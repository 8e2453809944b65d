"""Real images (photos, paintings, game art) taken from Debian packages, for tests and benchmarks.

The packages are fetched with ``apt-get download`` and unpacked with ``dpkg -x`` into a temporary
directory; only the selected image files are copied into the cache directory, under
``<cache>/<package>/<path inside the package>``. A marker file records the package version, so a
second call with the same cache does no network work. Needs a Debian system with ``apt-get`` and
``dpkg`` (``apt-get update`` is run once if the package lists are missing).

Selection rules keep one file per artwork where a package ships several renditions of it
(resolutions, dark variants, localised copies). Some artworks still share painted parts or differ only
in colour (Wesnoth reuses paintings; MATE has colour renditions of two designs): benchmarks must treat
those as related, see ``KNOWN_DERIVED`` in ``bench/fingerprint_image.py``.

    python -m media.samples.images var/samples/images
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE_DIR = Path("var/samples/images")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
_MARKER = ".complete"
_COMMAND_TIMEOUT_S = 900


class SampleUnavailable(RuntimeError):
    """The sample packages cannot be fetched on this machine (no apt, no network, not root)."""


@dataclass(frozen=True)
class ImagePackage:
    """A Debian package and the rule that picks its distinct images (paths relative to the root)."""

    name: str
    select: Callable[[Sequence[str]], list[str]]
    description: str


_RESOLUTION_NAME = re.compile(r"^(\d+)x(\d+)$")


def _select_plasma(paths: Sequence[str]) -> list[str]:
    # Each wallpaper ships several resolutions (and sometimes a dark variant): keep the largest light one.
    best: dict[str, tuple[int, str]] = {}
    for path in paths:
        parts = path.split("/")
        if len(parts) < 4 or parts[-2] != "images" or parts[-3] != "contents":
            continue
        match = _RESOLUTION_NAME.match(Path(parts[-1]).stem)
        if match is None:
            continue
        pixels = int(match.group(1)) * int(match.group(2))
        wallpaper = "/".join(parts[:-3])
        if wallpaper not in best or pixels > best[wallpaper][0]:
            best[wallpaper] = (pixels, path)
    return sorted(path for _, path in best.values())


def _select_mate(paths: Sequence[str]) -> list[str]:
    # "Elephants_3840x2160.jpg" is a rendition of "Elephants.jpg": drop the sized copies.
    chosen = [p for p in paths if p.startswith("usr/share/backgrounds/mate/")]
    stems = {p.rsplit(".", 1)[0] for p in chosen}
    sized = re.compile(r"^(.*)_\d+x\d+$")
    result = []
    for path in chosen:
        match = sized.match(path.rsplit(".", 1)[0])
        if match is not None and match.group(1) in stems:
            continue
        result.append(path)
    return sorted(result)


def _select_gnome(paths: Sequence[str]) -> list[str]:
    # "-d" files are the dark renditions of the "-l" ones.
    return sorted(
        p for p in paths if p.startswith("usr/share/backgrounds/gnome/") and not p.endswith("-d.webp")
    )


def _select_wesnoth(paths: Sequence[str]) -> list[str]:
    # Character portraits (painted, 400-500 px) and the story paintings; not sprites or terrain tiles.
    keep = []
    for path in paths:
        if "/l10n/" in path:
            continue
        portrait = "/images/portraits/" in path and path.endswith(".png")
        story = "/data/core/images/story/" in path and path.endswith(".jpg")
        if portrait or story:
            keep.append(path)
    return sorted(keep)


PACKAGES: dict[str, ImagePackage] = {
    package.name: package
    for package in (
        ImagePackage("mate-backgrounds", _select_mate, "MATE wallpapers: nature photos and abstract art"),
        ImagePackage("gnome-backgrounds", _select_gnome, "GNOME wallpapers: illustrations and photos"),
        ImagePackage("plasma-workspace-wallpapers", _select_plasma, "KDE Plasma wallpapers"),
        ImagePackage("wesnoth-1.16-data", _select_wesnoth, "Wesnoth character portraits and story art"),
    )
}
ALL_PACKAGES: tuple[str, ...] = tuple(PACKAGES)


def _run(command: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # Fixed argument lists (apt-get / dpkg and package names from PACKAGES), never a shell.
    try:
        return subprocess.run(
            list(command),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SampleUnavailable(f"{command[0]} failed: {error}") from error


def _download(package: str, workdir: Path) -> Path:
    # The sandbox user cannot write into a private temporary directory; we are root anyway.
    command = ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", package]
    result = _run(command, workdir)
    if result.returncode != 0:
        # A fresh machine has no package lists yet: refresh them once and retry.
        update = _run(["apt-get", "-q", "update"], workdir)
        if update.returncode != 0:
            raise SampleUnavailable(f"apt-get update failed: {update.stderr.strip()[-500:]}")
        result = _run(command, workdir)
        if result.returncode != 0:
            raise SampleUnavailable(f"apt-get download {package} failed: {result.stderr.strip()[-500:]}")
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if not debs:
        raise SampleUnavailable(f"apt-get download {package} produced no .deb file")
    return debs[0]


def _relative_image_paths(root: Path) -> list[str]:
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and path.suffix.lower() in IMAGE_SUFFIXES
    )


def ensure_package(package: str, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Make sure the selected images of ``package`` are in ``cache_dir/package``; return that folder."""
    spec = PACKAGES[package]
    target = Path(cache_dir) / package
    if (target / _MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tribute-samples-") as tmp:
        workdir = Path(tmp)
        deb = _download(package, workdir)
        unpacked = workdir / "root"
        result = _run(["dpkg", "-x", str(deb), str(unpacked)], workdir)
        if result.returncode != 0:
            raise SampleUnavailable(f"dpkg -x {deb.name} failed: {result.stderr.strip()[-500:]}")
        staging = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=target.parent))
        try:
            selected = spec.select(_relative_image_paths(unpacked))
            for relative in selected:
                destination = staging / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(unpacked / relative, destination)
            (staging / _MARKER).write_text(f"{deb.name}\n{len(selected)} images\n", encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return target


def ensure_images(cache_dir: Path = DEFAULT_CACHE_DIR, packages: Iterable[str] = ALL_PACKAGES) -> list[Path]:
    """Fetch (once) and list the sample images of ``packages``, as a sorted list of paths."""
    paths: list[Path] = []
    for package in packages:
        folder = ensure_package(package, cache_dir)
        paths.extend(folder / relative for relative in _relative_image_paths(folder))
    return sorted(paths)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("dest", nargs="?", type=Path, default=DEFAULT_CACHE_DIR, help="cache directory")
    parser.add_argument("--package", action="append", choices=ALL_PACKAGES, help="only these packages")
    arguments = parser.parse_args(argv)
    packages = arguments.package or list(ALL_PACKAGES)
    paths = ensure_images(arguments.dest, packages)
    for package in packages:
        count = sum(1 for path in paths if path.is_relative_to(Path(arguments.dest) / package))
        print(f"{package}: {count} images")
    print(f"{len(paths)} images in {arguments.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
