"""Decide what uploaded text is, by its content, and turn it into normalised plain text.

Accepted: plain text, Markdown, HTML (its main content, extracted with trafilatura) and PDF (its text
layer, read with pypdf). The file name and the client's content type are never trusted. Anything else,
and anything over the caps on bytes, characters and pages, raises a `media.errors` class with a stable
code. Pure: no Django.

Normalised text is what every offset refers to (quotes found by a trace, passages sold by retrieval):
Unicode NFC, `\\n` line ends, no control characters, runs of spaces and tabs made one space, at most one
blank line in a row, no spaces at line ends.
"""

from __future__ import annotations

import codecs
import io
import re
import unicodedata
import warnings
from dataclasses import dataclass

from media.errors import CorruptMedia, MediaTooLarge, UnsupportedMedia

ALLOWED_TEXT_FORMATS = "plain text, Markdown, HTML, PDF"


class ActiveContent(UnsupportedMedia):
    """HTML that carries scripts or other active content: we keep the original, so we never store it."""

    code = "active_content"


class InvalidEncoding(CorruptMedia):
    """Text whose bytes are not valid in the encoding they use."""

    code = "invalid_encoding"


@dataclass(frozen=True)
class TextLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_characters: int = 5_000_000
    max_pdf_pages: int = 2_000


@dataclass(frozen=True)
class TextDocument:
    media_type: str
    extension: str
    text: str  # normalised
    encoding: str | None = None  # of plain text, Markdown and HTML
    pages: int | None = None  # of a PDF

    @property
    def words(self) -> int:
        return len(self.text.split())


_BINARY_SIGNATURES = (
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"(\xb5/\xfd", "a zstd archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a program"),
    (b"\x89PNG", "an image"),
    (b"\xff\xd8\xff", "an image"),
    (b"GIF8", "an image"),
    (b"{\\rtf", "an RTF document"),
    (b"\xd0\xcf\x11\xe0", "an Office document"),
)
_HTML_START = re.compile(
    rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)\b", re.IGNORECASE | re.DOTALL
)
_HTML_TAGS = re.compile(rb"<(p|div|article|h[1-6]|section|span|br)\b[^>]*>", re.IGNORECASE)
_ACTIVE_HTML = re.compile(
    r"<\s*(script|iframe|object|embed|applet|frame|frameset|base|meta\s+http-equiv)\b"
    r"|\son[a-z]+\s*=|(href|src|action|formaction|data)\s*=\s*[\"']?\s*(javascript|vbscript|data):",
    re.IGNORECASE,
)
_MARKDOWN_HINTS = re.compile(
    r"^(#{1,6} \S|[*+-] \S|\d+\. \S|> \S|```|---+$|===+$)|\[[^\]\n]+\]\([^)\s]+\)|\*\*[^*\n]+\*\*",
    re.MULTILINE,
)


def sniff_text(head: bytes) -> str | None:
    """'pdf', 'html' or 'text' from the leading bytes; None for content that is not text at all."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    for signature, _ in _BINARY_SIGNATURES:
        if head.startswith(signature):
            return None
    body = head[3:] if head.startswith(codecs.BOM_UTF8) else head
    if _HTML_START.match(body) or len(_HTML_TAGS.findall(body)) >= 2:
        return "html"
    return "text"


def inspect_text(data: bytes, limits: TextLimits | None = None) -> TextDocument:
    """Validate uploaded text and return it normalised. Raises a MediaError subclass for anything refused."""
    limits = limits or TextLimits()
    if len(data) == 0:
        raise CorruptMedia("The file is empty.")
    if len(data) > limits.max_bytes:
        raise MediaTooLarge(f"The file is {len(data)} bytes; the limit for text is {limits.max_bytes} bytes.")
    head = data[:4096]
    fmt = sniff_text(head)
    if fmt is None:
        what = next(name for signature, name in _BINARY_SIGNATURES if head.startswith(signature))
        raise UnsupportedMedia(f"The content is {what}, not text ({ALLOWED_TEXT_FORMATS}).")
    if fmt == "pdf":
        document = _inspect_pdf(data, limits)
    else:
        decoded, encoding = decode(data)
        if fmt == "html":
            document = _inspect_html(decoded, encoding)
        elif _MARKDOWN_HINTS.search(decoded[:20_000]) and len(_MARKDOWN_HINTS.findall(decoded[:20_000])) >= 2:
            document = TextDocument("text/markdown", "md", normalise(markdown_to_text(decoded)), encoding)
        else:
            document = TextDocument("text/plain", "txt", normalise(decoded), encoding)
    if not document.text.strip():
        raise CorruptMedia("The file holds no text.")
    if len(document.text) > limits.max_characters:
        raise MediaTooLarge(
            f"The text has {len(document.text)} characters; the limit is {limits.max_characters}."
        )
    return document


def decode(data: bytes) -> tuple[str, str]:
    """The text and its encoding: UTF-8 (with or without a byte order mark), UTF-16 with a byte order mark,
    or a single-byte legacy encoding when the bytes hold no UTF-8 sequence at all. Bytes that are partly
    UTF-8 and partly not are refused: guessing would corrupt the text offsets we pay and trace by."""
    if data.startswith(codecs.BOM_UTF8):
        return _strict(data[3:], "utf-8"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _strict(data, "utf-16"), "utf-16"
    if b"\x00" in data:
        raise UnsupportedMedia("The content is binary (it holds NUL bytes), not text.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if _has_utf8_sequences(data):
            raise InvalidEncoding(
                f"The text is not valid UTF-8 (bad byte at offset {exc.start}); save it as UTF-8 and retry."
            ) from None
        text, encoding = _legacy(data)
    else:
        encoding = "utf-8"
    _refuse_binary(text)
    return text, encoding


def _strict(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InvalidEncoding(f"The text is not valid {encoding.upper()} (at byte {exc.start}).") from None


_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _has_utf8_sequences(data: bytes) -> bool:
    return _UTF8_SEQUENCE.search(data) is not None


# The legacy encodings we recognise (text in anything else should be saved as UTF-8).
_LEGACY_ENCODINGS = (
    "cp1252",
    "iso8859_15",
    "cp1250",
    "cp1251",
    "koi8_r",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "shift_jis",
    "euc_jp",
    "gb18030",
    "big5",
    "euc_kr",
)


def _legacy(data: bytes) -> tuple[str, str]:
    from charset_normalizer import from_bytes

    best = from_bytes(data[:200_000], cp_isolation=list(_LEGACY_ENCODINGS)).best()
    encoding = best.encoding if best is not None else None
    if encoding is None or encoding.lower().replace("_", "-").startswith("utf"):
        # A best guess of UTF-something for bytes that are not UTF-8 means nothing fits.
        encoding = "cp1252"
    try:
        return data.decode(encoding), encoding
    except (UnicodeDecodeError, LookupError):
        raise InvalidEncoding("The text's encoding cannot be recognised; save it as UTF-8.") from None


def _refuse_binary(text: str) -> None:
    sample = text[:100_000]
    controls = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t\f")
    if controls > max(8, len(sample) // 100):
        raise UnsupportedMedia("The content is binary (full of control characters), not text.")


def _inspect_html(html: str, encoding: str) -> TextDocument:
    if _ACTIVE_HTML.search(html):
        raise ActiveContent(
            "The HTML carries scripts or other active content (script, iframe, object, embed, event "
            "handlers, javascript: links); upload the article without them, or as plain text."
        )
    import trafilatura

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extracted = trafilatura.extract(
            html, include_comments=False, include_tables=True, favor_recall=True, deduplicate=False
        )
    if not extracted or not extracted.strip():
        raise CorruptMedia("No main text could be found in the HTML.")
    return TextDocument("text/html", "html", normalise(extracted), encoding)


def _inspect_pdf(data: bytes, limits: TextLimits) -> TextDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                raise UnsupportedMedia("The PDF is encrypted; upload it without a password.")
            # The page count the file declares is read before the page tree is walked: a file claiming
            # more pages than the cap is refused before any work is done for them.
            pages_root = reader.root_object["/Pages"].get_object()
            declared = pages_root.get("/Count", 0) if isinstance(pages_root, dict) else 0
            if not isinstance(declared, int) or declared > limits.max_pdf_pages:
                raise MediaTooLarge(
                    f"The PDF declares {declared} pages; the limit is {limits.max_pdf_pages} pages."
                )
            pages = len(reader.pages)
            if pages > limits.max_pdf_pages:
                raise MediaTooLarge(f"The PDF has {pages} pages; the limit is {limits.max_pdf_pages} pages.")
            if pages == 0:
                raise CorruptMedia("The PDF has no pages.")
            parts: list[str] = []
            characters = 0
            for page in reader.pages:
                part = page.extract_text() or ""
                characters += len(part)
                if characters > limits.max_characters:
                    raise MediaTooLarge(f"The PDF's text is over {limits.max_characters} characters.")
                parts.append(part)
    except (MediaTooLarge, UnsupportedMedia, CorruptMedia):
        raise
    except (PdfReadError, PyPdfError, KeyError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise CorruptMedia(f"The PDF is damaged or cannot be read: {exc}") from None
    text = normalise("\n\n".join(parts))
    if not text:
        raise CorruptMedia("The PDF has no text layer (a scan?); upload its text instead.")
    return TextDocument("application/pdf", "pdf", text, None, pages)


_MD_RULES = [
    (re.compile(r"^```.*?$", re.MULTILINE), ""),
    (re.compile(r"^#{1,6}\s+", re.MULTILINE), ""),
    (re.compile(r"^\s{0,3}>\s?", re.MULTILINE), ""),
    (re.compile(r"^\s{0,3}([*+-]|\d+\.)\s+", re.MULTILINE), ""),
    (re.compile(r"^(---+|===+|\*\*\*+)\s*$", re.MULTILINE), ""),
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),
    (re.compile(r"(?<![\w*])[*_](?!\s)(.+?)(?<!\s)[*_](?![\w*])"), r"\1"),
    (re.compile(r"`([^`]+)`"), r"\1"),
]


def markdown_to_text(markdown: str) -> str:
    """Markdown's markup removed, its words and line structure kept."""
    for pattern, replacement in _MD_RULES:
        markdown = pattern.sub(replacement, markdown)
    return markdown


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u2028\u2029\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANKS = re.compile(r"\n{3,}")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", text).strip()
