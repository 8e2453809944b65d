"""Real English prose from Debian packages, for the text benchmarks and tests.

`python3.11-doc` (the Python 3.11 documentation's reStructuredText sources: tutorials, how-tos, library
reference), `postgresql-doc-15` (the PostgreSQL 15 manual, HTML), `debian-reference-en` (the Debian
Reference, HTML) and `gnu-standards` (the GNU Coding Standards and the GNU maintainers' guide, plain text).
Each is fetched once with ``apt-get download``, unpacked with ``dpkg -x`` into the cache, and cut into
documents at paragraph breaks (sizes chosen by the caller), with code blocks, tables and markup lines left
out. The texts stay under their own licences (PSF, GPL, GFDL):
test data, never shipped content.
"""

from __future__ import annotations

import argparse
import gzip
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lxml import html as lxml_html

DEFAULT_CACHE_DIR = Path("var/samples/text")
PACKAGES = ("python3.11-doc", "postgresql-doc-15", "debian-reference-en", "gnu-standards")


class SampleUnavailable(RuntimeError):
    pass


def _fetch(package: str, cache_dir: Path) -> Path:
    target = cache_dir / package
    if (target / ".done").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        command = ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", package]
        try:
            subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600, check=True)
            [deb] = list(Path(work).glob("*.deb"))
            subprocess.run(
                ["dpkg", "-x", str(deb), str(target)], capture_output=True, timeout=600, check=True
            )
        except (OSError, ValueError, subprocess.SubprocessError) as error:
            raise SampleUnavailable(f"cannot fetch {package}: {error}") from error
    (target / ".done").write_text("ok")
    return target


_RST_NOISE = re.compile(r"^\s*(\.\.|:[a-z]+:|[=\-~^*#+`]{3,}|>>>|\.\.\.|\$ |\|)")


def _paragraphs_of_rst(text: str) -> list[str]:
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if not lines or lines[0].startswith((" ", "\t")) or any(_RST_NOISE.match(line) for line in lines):
            continue  # code, directives, tables, titles
        plain = re.sub(r":[a-z:]+:`~?([^`<]+?)(\s*<[^>]*>)?`", r"\1", " ".join(lines))
        plain = re.sub(r"`+([^`]+)`+_?", r"\1", plain).replace("**", "").replace("*", "")
        if len(plain.split()) >= 12:
            paragraphs.append(" ".join(plain.split()))
    return paragraphs


def _paragraphs_of_html(data: bytes) -> list[str]:
    tree = lxml_html.fromstring(data)
    found = []
    for element in tree.iter("p"):
        text = " ".join("".join(str(part) for part in element.itertext()).split())
        if len(text.split()) >= 12:
            found.append(text)
    return found


def _paragraphs_of_plain(text: str) -> list[str]:
    found = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if (
            not lines
            or lines[0].startswith("     ")
            or any(line.strip().startswith(("*", "=")) for line in lines)
        ):
            continue
        plain = " ".join(block.split())
        if len(plain.split()) >= 12:
            found.append(plain)
    return found


def _documents(paragraphs: list[str], min_words: int, max_words: int) -> list[str]:
    documents: list[str] = []
    current: list[str] = []
    count = 0
    for paragraph in paragraphs:
        words = len(paragraph.split())
        if current and count + words > max_words:
            if count >= min_words:
                documents.append("\n\n".join(current))
            current, count = [], 0
        current.append(paragraph)
        count += words
    if current and count >= min_words:
        documents.append("\n\n".join(current))
    return documents


def documents(
    cache_dir: Path = DEFAULT_CACHE_DIR, *, min_words: int = 150, max_words: int = 400
) -> list[tuple[str, str]]:
    """(source, text) documents from every package, in a stable order."""
    out: list[tuple[str, str]] = []
    root = _fetch("python3.11-doc", cache_dir)
    for path in sorted(root.rglob("_sources/**/*.rst.txt")):
        paragraphs = _paragraphs_of_rst(path.read_text(encoding="utf-8", errors="replace"))
        for n, doc in enumerate(_documents(paragraphs, min_words, max_words)):
            out.append((f"python:{path.relative_to(root).as_posix()}#{n}", doc))
    root = _fetch("postgresql-doc-15", cache_dir)
    for path in sorted(root.rglob("*.html")):
        for n, doc in enumerate(_documents(_paragraphs_of_html(path.read_bytes()), min_words, max_words)):
            out.append((f"postgresql:{path.name}#{n}", doc))
    root = _fetch("debian-reference-en", cache_dir)
    for path in sorted(root.rglob("*.en.html")):
        for n, doc in enumerate(_documents(_paragraphs_of_html(path.read_bytes()), min_words, max_words)):
            out.append((f"debian-reference:{path.name}#{n}", doc))
    root = _fetch("gnu-standards", cache_dir)
    for path in sorted(root.rglob("*.text.gz")):
        text = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
        for n, doc in enumerate(_documents(_paragraphs_of_plain(text), min_words, max_words)):
            out.append((f"gnu-standards:{path.name}#{n}", doc))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch the text corpus and print its size.")
    parser.add_argument("dest", nargs="?", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args(argv)
    docs = documents(args.dest)
    words = sum(len(text.split()) for _, text in docs)
    for prefix in ("python", "postgresql", "debian-reference", "gnu-standards"):
        print(f"{prefix}: {sum(1 for source, _ in docs if source.startswith(prefix + ':'))} documents")
    print(f"{len(docs)} documents, {words} words")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
