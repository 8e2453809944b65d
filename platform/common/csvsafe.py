"""CSV cells a spreadsheet would evaluate are neutralised: text starting with =, +, -, @, a tab or a carriage
return gets a leading apostrophe (OWASP's advice), so a work title such as `=HYPERLINK(...)` stays text.
Plain numbers ("-5.00") are left as they are; so are ints and every other non-text value."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?$")


def spreadsheet_safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


class SafeCsvWriter:
    """csv.writer whose every row is neutralised cell by cell."""

    def __init__(self, buffer: Any, **options: Any) -> None:
        self._writer = csv.writer(buffer, **options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([spreadsheet_safe(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)
