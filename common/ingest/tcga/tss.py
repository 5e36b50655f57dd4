"""TCGA tissue-source-site (TSS) code tables: barcode characters 6-7 -> project.

The GDC publishes the table, with the columns ``TSS Code``, ``Source Site``,
``Study Name`` and ``BCR``, at
https://gdc.cancer.gov/resources-tcga-users/tcga-code-tables/tissue-source-site-codes.
Its code and study columns ship with OncoFed as ``tss_codes.tsv`` (the table's
May 2015 state, 1,052 codes; the file's header says where it came from): the
last resort for a patient whose files name no project. A newer table, given
with ``oncofed prepare --tss-table FILE`` or dropped into ``--root`` (recognised
by its columns), takes precedence for every code it lists. Study names become
projects through GDC's study abbreviation table (``study_abbreviations.tsv``).
A code listed for two different studies in the user's tables decides nothing;
a code in no table leaves the patient's project unknown (quarantined).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from oncofed.common.errors import DataError
from oncofed.common.ingest import text

STUDY_FILE = Path(__file__).with_name("study_abbreviations.tsv")
SHIPPED_FILE = Path(__file__).with_name("tss_codes.tsv")
CODE = re.compile(r"^[A-Z0-9]{2}$")
CODE_COLUMN = "tss code"
# a column naming the study by name, or the project / abbreviation directly
STUDY_COLUMNS = ("study name",)
PROJECT_COLUMNS = ("study abbreviation", "project_id", "project", "project id")


@cache
def study_projects() -> dict[str, str]:
    """Study name (lower case) and abbreviation -> ``TCGA-<ABBR>``."""
    out: dict[str, str] = {}
    for line in STUDY_FILE.read_text(encoding="utf-8").splitlines()[1:]:
        if line.startswith("#") or "\t" not in line:
            continue
        abbr, name = line.split("\t", 1)
        if abbr == "Study Abbreviation":
            continue
        out[name.strip().lower()] = f"TCGA-{abbr.strip()}"
        out[abbr.strip().lower()] = f"TCGA-{abbr.strip()}"
    return out


@cache
def shipped() -> TssTable:
    """The TSS code table shipped with OncoFed (``tss_codes.tsv``)."""
    table = TssTable()
    for line in SHIPPED_FILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or "\t" not in line:
            continue
        code, study = line.split("\t", 1)
        proj = _project(study)
        if CODE.match(code) and proj is not None:
            table.codes[code] = proj
    return table


def is_tss_table(header_lower: list[str]) -> bool:
    """A TSS code table: a ``TSS Code`` column and a study or project column."""
    cols = {h.strip().lower() for h in header_lower}
    return CODE_COLUMN in cols and bool(cols & {*STUDY_COLUMNS, *PROJECT_COLUMNS})


def _project(value: str) -> str | None:
    v = " ".join(value.split()).lower()
    if not v:
        return None
    if v.startswith("tcga-") and v[5:].isalpha():
        return v.upper()
    return study_projects().get(v)


@dataclass
class TssTable:
    """TSS code -> project, and what was set aside while reading."""

    codes: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def update(self, other: TssTable) -> None:
        for code, proj in other.codes.items():
            if self.codes.get(code, proj) != proj:
                self.notes.append(
                    f"TSS code {code} is listed for {self.codes[code]} and {proj} "
                    "in different tables: it decides no project"
                )
                self.codes[code] = ""
            else:
                self.codes[code] = proj
        self.notes += other.notes

    def project(self, code: str) -> str | None:
        return self.codes.get(code.upper()) or None


def read_tss_table(path: Path) -> TssTable:
    """Read a TSS code table in the GDC's layout (any encoding, delimiter or
    Excel). Rows whose code is not two letters or digits, or whose study is not a
    TCGA study, are left out and counted in the notes."""
    try:
        frame = text.read_table(path)
    except text.TableError as err:
        raise DataError(path, "TSS table", str(err), "save it as a TSV or CSV") from err
    cols = {c.strip().lower(): c for c in frame.columns}
    if CODE_COLUMN not in cols:
        raise DataError(
            path, "TSS Code", "column absent",
            "give the GDC's tissue-source-site table (columns TSS Code, Source "
            "Site, Study Name, BCR)",
        )  # fmt: skip
    study_col = next(
        (cols[c] for c in (*PROJECT_COLUMNS, *STUDY_COLUMNS) if c in cols), None
    )
    if study_col is None:
        raise DataError(
            path, "Study Name", "column absent",
            "the table needs a 'Study Name' (or 'Study Abbreviation') column",
        )  # fmt: skip
    table = TssTable()
    bad_code, unknown = 0, set()
    for row in frame.to_dict("records"):
        code = str(row[cols[CODE_COLUMN]]).strip().upper()
        proj = _project(str(row[study_col]))
        if not CODE.match(code):
            bad_code += 1
        elif proj is None:
            unknown.add(str(row[study_col]).strip() or "(empty)")
        elif table.codes.get(code, proj) != proj:
            table.notes.append(
                f"{path.name}: TSS code {code} is listed for two studies"
            )
            table.codes[code] = ""
        else:
            table.codes[code] = proj
    if bad_code:
        table.notes.append(
            f"{path.name}: {bad_code} row(s) without a two-character TSS code left out"
        )
    if unknown:
        shown = ", ".join(sorted(unknown)[:5])
        table.notes.append(
            f"{path.name}: {len(unknown)} study name(s) that are not TCGA studies "
            f"left out ({shown})"
        )
    return table
