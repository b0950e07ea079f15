"""CSV cells a spreadsheet cannot execute.

Excel, LibreOffice and Google Sheets evaluate a cell that starts with `=`, `+`, `-` or
`@` (and, after a tab or carriage return, the same) as a formula, so a zone named
`=HYPERLINK("http://…")` would become a live link in an officer's export. Every CSV the
product writes passes its cells through `safe_cell`, which prefixes such text with a
single quote, as the OWASP "CSV Injection" page recommends. Numbers are left alone (a
negative count stays a number).
"""
from __future__ import annotations

import csv

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """`value`, or "'" + value when it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


class SafeWriter:
    """csv.writer whose every cell goes through `safe_cell`."""

    def __init__(self, out, **kwargs):
        self._w = csv.writer(out, **kwargs)

    def writerow(self, row):
        return self._w.writerow([safe_cell(v) for v in row])

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)


class SafeDictWriter(csv.DictWriter):
    """csv.DictWriter whose every cell goes through `safe_cell`."""

    def writerow(self, rowdict):
        return super().writerow({k: safe_cell(v) for k, v in rowdict.items()})
