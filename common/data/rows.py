"""Read a prepared folder's tables line by line: a bad line costs one row.

``manifest.csv``, ``clinical.tsv`` and ``genomics.tsv`` are written by ``oncofed
prepare`` but live on a hospital's disk, where a byte can flip or an editor can
merge two lines. Each physical line is decoded and split on its own, so damage
never spreads past the line it is on:

* a line that is not UTF-8, or splits into another number of fields than the
  header (a stray quote, a merged or split row), is set aside with its file, line
  number and reason;
* a repeated key (``case_id``) keeps the first row and sets the later ones aside;
* a header without the key column, or a file that is not text at all, raises
  ``DataError`` naming the file: the caller decides what that costs.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from oncofed.common.errors import DataError

MAX_TABLE_BYTES = 512 * 1024**2  # a prepared table larger than this is refused


@dataclass
class BadLine:
    """A line set aside: where, the key if it could be read, and why."""

    path: str
    line: int  # 1-based, as an editor shows it
    key: str
    reason: str


@dataclass
class Rows:
    """The readable rows of a table (in file order), keyed rows, and bad lines."""

    columns: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)
    line_of: dict[str, int] = field(default_factory=dict)  # key -> line number
    bad: list[BadLine] = field(default_factory=list)

    def by_key(self, key: str) -> dict[str, dict[str, str]]:
        return {r[key]: r for r in self.rows}

    def bad_key(self, key_value: str) -> BadLine | None:
        """The bad line that carried ``key_value``, if any."""
        return next((b for b in self.bad if b.key == key_value), None)


def read_rows(path: Path, sep: str, key: str) -> Rows:
    """Every line of ``path`` read on its own (see the module docstring)."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_TABLE_BYTES:
        raise DataError(
            path, "size", f"{size} bytes, more than a prepared table may have",
            "prepare the folder again",
        )  # fmt: skip
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise DataError(path, "header", "the file is empty", "prepare the folder again")
    first = _decode(lines[0])
    header = None if first is None else _split(first, sep)
    if header is None or key not in header:
        raise DataError(
            path,
            "line 1 (header)",
            f"no {key!r} column in the header",
            "the header line is damaged; prepare the folder again",
        )
    out = Rows(columns=header)
    for number, raw_line in enumerate(lines[1:], start=2):
        text = _decode(raw_line)
        if text is None:
            out.bad.append(BadLine(str(path), number, "", "not UTF-8 text"))
            continue
        if not text.strip():
            continue
        cells = _split(text, sep)
        guess = _guess_key(text, sep, header.index(key))
        if cells is None or len(cells) != len(header):
            n = "unparseable" if cells is None else f"{len(cells)} fields"
            out.bad.append(
                BadLine(
                    str(path), number, guess,
                    f"{n}, the header has {len(header)} (a stray quote, or a "
                    "merged or split row)",
                )
            )  # fmt: skip
            continue
        row = dict(zip(header, cells, strict=True))
        if row[key] in out.line_of:
            out.bad.append(
                BadLine(
                    str(path), number, row[key],
                    f"duplicate {key} {row[key]!r} (first on line "
                    f"{out.line_of[row[key]]}, which is kept)",
                )
            )  # fmt: skip
            continue
        out.line_of[row[key]] = number
        out.rows.append(row)
    return out


def _decode(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        return None


def _split(text: str, sep: str) -> list[str] | None:
    try:
        return next(csv.reader([text], delimiter=sep, strict=True))
    except (csv.Error, StopIteration):
        return None


def _guess_key(text: str, sep: str, index: int) -> str:
    """The key cell of a damaged line, split naively (to name the case)."""
    parts = text.split(sep)
    return parts[index].strip('"') if index < len(parts) else ""
