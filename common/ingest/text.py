"""Delimited text files as users re-save them: one decoder for every reader.

A table saved again by a spreadsheet or a script should read the same as the
original. This module undoes what re-saving does:

* compression: gzip (by its magic bytes, whatever the name);
* Excel: a ``.xlsx`` / ``.xls`` workbook's first sheet is read as the table it
  shows (every cell as text);
* encoding: a UTF-8 / UTF-16 / UTF-32 byte-order mark, else UTF-8, else
  Windows-1252 (Excel's "CSV" on Windows); the one chosen is reported;
* line ends: CRLF and CR become LF;
* delimiter: tab, comma or semicolon, from the header line (the one with most
  fields that every sampled line agrees with);
* R's ``write.table`` header, one cell short (row names have no header): the
  missing first name is filled in as ``row``.

``#`` comment lines at the top (cBioPortal's metadata rows) are skipped by
:func:`read_table` when asked. Anything else that does not parse raises
:class:`TableError` naming the file and the problem.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

GZIP_MAGIC = b"\x1f\x8b"
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
DELIMITERS = ("\t", ",", ";")
MAX_TEXT_BYTES = 2 * 1024**3  # a text table larger than this is refused unread


class TableError(ValueError):
    """A text table that cannot be decoded or split (the message says why)."""


@dataclass(frozen=True)
class Text:
    """A decoded file: its text (LF line ends) and how it was stored."""

    text: str
    encoding: str
    gzipped: bool


def _raw(path: Path, limit: int | None) -> tuple[bytes, bool]:
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head == GZIP_MAGIC:
        with gzip.open(path, "rb") as gz:
            return gz.read(limit if limit is not None else MAX_TEXT_BYTES + 1), True
    size = path.stat().st_size
    if limit is None and size > MAX_TEXT_BYTES:
        raise TableError(f"{path}: {size} bytes, more than a text table may have")
    with open(path, "rb") as fh:
        return fh.read(limit if limit is not None else -1), False


def decode(path: Path, limit: int | None = None) -> Text:
    """The text of ``path`` (its first ``limit`` bytes, when given)."""
    raw, gzipped = _raw(Path(path), limit)
    if limit is None and len(raw) > MAX_TEXT_BYTES:
        raise TableError(f"{path}: more than {MAX_TEXT_BYTES} bytes once decompressed")
    for bom, encoding in BOMS:
        if raw.startswith(bom):
            text = raw.decode(encoding, errors="replace" if limit else "strict")
            return Text(_lf(text.lstrip("\ufeff")), encoding, gzipped)
    if b"\x00" in raw[:4096]:
        raise TableError(
            f"{path}: contains NUL bytes without a byte-order mark: not a text table "
            "(save it as UTF-8 text, CSV or TSV)"
        )
    for encoding in ("utf-8", "cp1252"):
        try:
            return Text(_lf(raw.decode(encoding)), encoding, gzipped)
        except UnicodeDecodeError as err:
            if limit and encoding == "utf-8" and err.start >= len(raw) - 4:
                # a multi-byte character cut by the limit
                return Text(_lf(raw[: err.start].decode("utf-8")), "utf-8", gzipped)
    return Text(_lf(raw.decode("latin-1")), "latin-1", gzipped)


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


EXCEL_SUFFIXES = {".xlsx", ".xls"}


def is_excel(path: Path) -> bool:
    return Path(path).suffix.lower() in EXCEL_SUFFIXES


def _excel(path: Path, nrows: int | None = None) -> pd.DataFrame:
    """The first sheet of a workbook, every cell as text ('' for empty); a
    header row of ``#`` lines (cBioPortal's, re-saved) is kept as rows."""
    size = Path(path).stat().st_size
    if size > MAX_TEXT_BYTES // 8:
        raise TableError(f"{path}: {size} bytes, more than a workbook may have")
    try:
        frame = pd.read_excel(path, dtype=str, header=None, nrows=nrows)
    except Exception as err:  # noqa: BLE001 - any reader failure names the file
        raise TableError(f"{path}: not a readable workbook ({err})") from err
    return frame.fillna("")


def first_lines(path: Path, n: int = 8) -> list[str]:
    """The first ``n`` lines, decoded (for recognising a file by its content); a
    workbook's first sheet is given as tab-separated lines."""
    if is_excel(path):
        frame = _excel(path, nrows=n)
        return ["\t".join(map(str, row)) + "\n" for row in frame.to_numpy().tolist()]
    text = decode(path, limit=256 * 1024).text
    return [ln + "\n" for ln in text.split("\n")[:n] if ln]


def sniff_delimiter(lines: list[str]) -> str:
    """Tab, comma or semicolon: the delimiter that splits the header into the most
    fields, preferring one the following lines agree with."""
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        return "\t"

    def fields(line: str, d: str) -> int:
        return len(next(csv.reader([line.rstrip("\n")], delimiter=d)))

    best, best_key = "\t", (-1, -1)
    for d in DELIMITERS:
        head = fields(lines[0], d)
        agree = sum(fields(ln, d) in (head, head + 1) for ln in lines[1:])
        key = (int(head > 1) * (agree + 1), head)
        if key > best_key:
            best, best_key = d, key
    return best


def read_table(
    path: Path, sep: str | None = None, skip_hash: bool = False
) -> pd.DataFrame:
    """A delimited file as a table of strings ('' for empty cells), with the
    re-saving above undone."""
    path = Path(path)
    if is_excel(path):  # the first sheet, as the tab-separated text it shows
        rows = _excel(path).to_numpy().tolist()
        text = "\n".join("\t".join(map(str, r)) for r in rows)
        return _parse(path, text, "\t", skip_hash)
    try:
        text = decode(path).text
    except OSError as err:
        raise TableError(f"{path}: cannot be read ({err})") from err
    return _parse(path, text, sep, skip_hash)


def _parse(path: Path, text: str, sep: str | None, skip_hash: bool) -> pd.DataFrame:
    lines = text.split("\n")
    start = 0
    if skip_hash:
        while start < len(lines) and lines[start].startswith("#"):
            start += 1
    body = "\n".join(lines[start:])
    sep = sep or sniff_delimiter(lines[start : start + 20])
    header = next(
        csv.reader([lines[start] if start < len(lines) else ""], delimiter=sep)
    )
    sample = [ln for ln in lines[start + 1 : start + 50] if ln.strip()]
    widths = {len(next(csv.reader([ln], delimiter=sep))) for ln in sample}
    if widths == {len(header) + 1}:  # R write.table: no header for the row names
        body = sep.join(["row", *header]) + "\n" + "\n".join(lines[start + 1 :])
    try:
        return pd.read_csv(io.StringIO(body), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, csv.Error) as err:
        raise TableError(
            f"{path}: does not split into columns with delimiter {sep!r} ({err})"
        ) from err
