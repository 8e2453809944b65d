"""Text for the tests, written for them (no third party's words), and small PDF and archive makers."""

from __future__ import annotations

import io
import zipfile

ARTICLE = """The harbour town woke before the fishing fleet returned. Gulls argued over the nets stacked on
the quay while the baker pushed open her shutters and the smell of bread drifted down to the water.

By seven the first boats rounded the breakwater, low in the water with the night's catch. Old Tomas stood
at the end of the pier counting hulls, as he had every morning for forty years, and frowned when he
reached eleven instead of twelve. The missing boat belonged to his granddaughter, who had gone out alone
against the harbour master's advice because the mackerel were running close to the cliffs that week.

Nobody said anything for a long time. The radio in the harbour office crackled with weather reports from
the islands, wind from the south west rising to gale force by evening, and the coastguard asked every
skipper who had come in to say where they had last seen her. One remembered her lights near the lighthouse
at three in the morning; another thought he had heard her engine stop and start again near the reef.

At half past nine a small shape appeared beyond the point, towing a second boat whose engine had failed.
She had found the Morales brothers drifting towards the rocks and had spent the night bringing them home
at walking pace, bailing with one hand and steering with the other. Tomas did not say a word when she
tied up, but the whole quay saw him wipe his eyes with the back of his sleeve before he went to fetch
the coffee."""

OTHER = """Spreadsheets are the most widely used programming environment in the world, although few of the
people who build them would call themselves programmers. A formula in a cell is a small pure function of
other cells, and the sheet recalculates whenever an input changes, which is exactly the model that
reactive user interface frameworks rediscovered decades later. The trouble starts when a sheet grows: names
are addresses, tests do not exist, and a single pasted value can silently replace a formula that a whole
department relied upon for quarterly reporting."""


def pdf(pages: list[str], *, declared_count: int | None = None) -> bytes:
    """A small valid PDF with one line of Helvetica text per page; `declared_count` makes the page tree
    claim another number of pages than it holds."""
    objects: list[bytes] = []
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {declared_count or count} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, line in enumerate(pages):
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 40 700 Td ({escaped}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def zip_bomb(uncompressed_bytes: int = 200 * 1024 * 1024) -> bytes:
    """A small ZIP that inflates to `uncompressed_bytes` of zeros."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("story.txt", "w") as member,
    ):
        block = b"\0" * (1024 * 1024)
        for _ in range(uncompressed_bytes // len(block)):
            member.write(block)
    return buffer.getvalue()


LYRICS = """Lantern on the water, lantern on the stair,
I counted all the windows and your light was never there.
The tide came in at midnight and the tide went out at four,
and every wave that found the sand was knocking at my door.

So sing me back the harbour, sing me back the bay,
sing me every mile of sea that carried you away.
I will keep the kettle warm and leave the latch undone,
until the boats come home again beneath a morning sun."""
