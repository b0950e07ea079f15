"""CSV the way spreadsheet tools write it.

Excel's "CSV UTF-8" starts with a byte-order mark; in locales with a decimal comma it
separates fields with `;`; "Unicode text" is tab-separated; headers get stray spaces.
Every CSV the importers read goes through `dict_reader`, so each of those is read as
the plain comma-separated file it means."""
from __future__ import annotations

import csv
import io

DELIMITERS = ",;\t"


def dict_reader(text: str) -> csv.DictReader:
    """A DictReader over `text` (BOM already decoded or not) with the delimiter the
    header line uses and header names stripped. Rows with more fields than the header
    carry them under the key None, as csv.DictReader does."""
    text = text.removeprefix("\ufeff")
    first = text.split("\n", 1)[0]
    delimiter = max(DELIMITERS, key=first.count)
    f = io.StringIO(text, newline="")
    header = next(csv.reader(f, delimiter=delimiter), [])
    return csv.DictReader(f, fieldnames=[h.strip() for h in header], delimiter=delimiter)


def read_text(path, limit: int | None = None) -> str:
    """A CSV file's text (its first `limit` bytes, e.g. to read only the header): UTF-8
    (with or without BOM), else Windows-1252, which is what Excel's plain "CSV" writes
    on Windows."""
    with open(path, "rb") as f:
        data = f.read(limit) if limit else f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if limit and exc.start >= len(data) - 3:  # a character cut at the limit
            return data[: exc.start].decode("utf-8-sig")
        return data.decode("cp1252", errors="replace")
