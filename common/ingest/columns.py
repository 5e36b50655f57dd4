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


# Clinical columns a spreadsheet may contribute, by normalised name (words joined
# by "_"): an allow-list. Anything else is dropped on ingest and named in the
# report (never its values). Outcome columns are not here; one becomes the label
# only when the operator names it with --label-column.
CLINICAL_ALLOWED = frozenset(
    {
        # demographics
        "age", "age_at_diagnosis", "age_at_index", "diagnosis_age", "sex",
        "gender", "bmi", "weight", "height", "smoking", "alcohol", "diabetes",
        # stage and grade
        "stage", "t_stage", "n_stage", "m_stage", "tnm", "ajcc_stage", "bclc",
        "bclc_stage", "clip", "okuda", "grade", "tumor_grade", "tumour_grade",
        "differentiation", "ecog", "performance_status",
        # liver function and aetiology
        "child_pugh", "child_pugh_class", "child_pugh_score", "meld", "cirrhosis",
        "fibrosis", "hbv", "hcv", "hepatitis_b", "hepatitis_c", "nafld", "nash",
        "steatosis",
        # laboratory values
        "afp", "alpha_fetoprotein", "ca19_9", "ca_19_9", "cea", "albumin", "alb",
        "bilirubin", "total_bilirubin", "tbil", "inr", "platelets", "plt", "alt",
        "ast", "ggt", "alp", "creatinine", "sodium", "crp", "ldh",
        # tumour burden
        "tumor_size", "tumour_size", "tr_size", "largest_tumor_size",
        "number_of_lesions", "lesion_count", "nodules", "multifocal",
        "t_involvement", "t_involvment", "vascular_invasion",
        "microvascular_invasion", "portal_vein_thrombosis", "pvt",
        "extrahepatic_spread", "lymph_nodes", "lymph_node", "synchronous",
        "bilobar",
        # molecular markers reported on the clinical sheet
        "kras", "nras", "braf", "msi", "mmr",
    }
)  # fmt: skip
AGE_TOP_CODE = 90  # HIPAA Safe Harbor: every age over 89 is reported as 90+


def normalised(name: str) -> str:
    """``Child-Pugh Score`` -> ``child_pugh_score``; ``CA19-9`` -> ``ca19_9``."""
    return "_".join(words(name))


def allowed_clinical(name: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether a spreadsheet column may enter the prepared clinical table: named
    by the allow-list (or in ``extra``, e.g. the --label-column), and not on the
    never-feature list unless it is in ``extra``."""
    n = normalised(name)
    if name in extra or n in {normalised(e) for e in extra}:
        return True
    return n in CLINICAL_ALLOWED and never_feature(name) is None


def is_age(name: str) -> bool:
    n = normalised(name)
    return n == "age" or n.startswith("age_") or n.endswith("_age")


def top_code_age(value: float | None) -> float | None:
    """Ages over 89 become 90 (read: 90 or older)."""
    if value is None:
        return None
    return float(min(value, AGE_TOP_CODE))
