"""Files made once and then only read (development keys and secrets under var/keys/), safe when several
processes start together: the content is written to a private temporary file beside the target and linked
into place, so a reader finds either no file or the whole file, and the first process to link wins."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def made_once(path: Path, make: Callable[[], bytes]) -> bytes:
    """The bytes of `path`, made by `make()` and stored with mode 0600 if it does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(make())
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process linked its own first: theirs stays
                os.link(staging, path)
        finally:
            os.unlink(staging)
    return path.read_bytes()
