"""Column names that are never features of any model: one list for every reader.

A column is matched by its *words* (the name lower-cased and split on anything
that is not a letter or a digit; ``OS.time`` -> ``os``, ``time``), so a gene symbol
such as ``ID1`` or ``NOTCH1`` is not mistaken for ``id`` or ``notes``. Each family
says why the column is never a feature:

* ``outcome``: what a model would be asked to predict or that reveals it (vital
  status, events, overall / disease-free / progression-free survival, recurrence);
* ``time``: follow-up durations and offsets (``days_to_*``, ``*_months``,
  ``OS.time``), which carry the outcome through how long a patient was seen;
* ``date``: calendar dates and years, birth and death;
* ``identity``: identifiers of a person, a sample or a record (ids, UUIDs,
  barcodes, names, initials, MRN / NHS numbers, postcodes, accession numbers);
* ``institution``: where and by whom a patient was treated (hospital, institution,
  physician, surgeon, referring doctor);
* ``free text``: notes and comments;
* ``xena internal``: UCSC Xena's bookkeeping columns (a leading ``_``:
  ``_EVENT``, ``_TIME_TO_EVENT``, ``_PATIENT``).

Readers take clinical columns from an allow-list (the dataset's schema); this list
is the second wall, for tables whose columns are not known in advance (a genomic
matrix keyed by barcode, a user's own table).
"""

from __future__ import annotations

import re

FAMILIES: dict[str, frozenset[str]] = {
    "outcome": frozenset(
        {
            "vital",
            "event",
            "events",
            "os",
            "pfs",
            "pfi",
            "dfs",
            "dfi",
            "dss",
            "efs",
            "rfs",
            "ttp",
            "death",
            "dead",
            "deceased",
            "died",
            "survival",
            "survived",
            "censor",
            "censored",
            "censoring",
            "recurrence",
            "relapse",
            "progression",
            "outcome",
            "prognosis",
        }
    ),  # fmt: skip
    "time": frozenset(
        {
            "time",
            "times",
            "days",
            "day",
            "months",
            "month",
            "weeks",
            "week",
            "years",
            "followup",
            "duration",
            "interval",
            "tte",
        }
    ),  # fmt: skip
    "date": frozenset(
        {"date", "dates", "dob", "dod", "birth", "birthday", "year", "yob", "yod"}
    ),
    "identity": frozenset(
        {
            "id",
            "ids",
            "uuid",
            "guid",
            "barcode",
            "name",
            "names",
            "surname",
            "firstname",
            "lastname",
            "initials",
            "mrn",
            "nhs",
            "ssn",
            "accession",
            "postcode",
            "zip",
            "zipcode",
            "address",
            "phone",
            "email",
            "patient",
            "submitter",
            "aliquot",
            "sample",
            "case",
        }
    ),  # fmt: skip
    "institution": frozenset(
        {
            "hospital",
            "institution",
            "physician",
            "surgeon",
            "doctor",
            "clinician",
            "referring",
            "consultant",
            "radiologist",
            "pathologist",
            "centre",
            "center",
            "clinic",
            "ward",
        }
    ),  # fmt: skip
    "free text": frozenset(
        {"note", "notes", "comment", "comments", "remark", "remarks", "text"}
    ),
}
# word pairs that name a family only together ("follow up", "last contact")
PAIRS = {("follow", "up"): "time", ("last", "contact"): "time"}
_WORD = re.compile(r"[a-z0-9]+")


def words(name: str) -> list[str]:
    """``OS.time`` -> ``['os', 'time']``; ``daysToDeath`` -> ``['days', 'to',
    'death']``; ``ID1`` -> ``['id1']`` (a gene, not an ``id``)."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", str(name))
    return _WORD.findall(spaced.lower())


def never_feature(name: str) -> str | None:
    """The family that keeps column ``name`` out of every model, or None."""
    text = str(name).strip()
    if text.startswith("_"):
        return "xena internal"
    ws = words(text)
    for family, members in FAMILIES.items():
        if any(w in members for w in ws):
            return family
    for pair, family in PAIRS.items():
        if any(tuple(ws[i : i + 2]) == pair for i in range(len(ws) - 1)):
            return family
    return None
