"""Readers shared by the imaging datasets (LiTS17, CirrMRI600+, HCC-TACE-Seg, CRLM).

* NIfTI image/mask pairs are checked (3-D, same shape, label values allowed) and
  copied unchanged under a pseudonymous name.
* DICOM series and DICOM-SEGs go through :mod:`common.ingest.dicom` (HU, orientation,
  alignment, de-identification) and are written as NIfTI.
* A clinical spreadsheet (CSV, TSV or XLSX) is joined to the images through the
  column whose values match the patients' IDs; identifying columns (names, dates,
  record numbers...) are dropped on ingest and the ID replaced by the pseudonym.
* Sites, where the institution is not recorded, come from a documented proxy: the
  scanner (manufacturer + model) for DICOM, the voxel-spacing group for NIfTI.

Label: tumour present in the mask (LiTS label 2) when the dataset has tumour masks,
else the dataset's fixed label, else ``--label-column`` of the clinical table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oncofed.common.data.limits import check_nifti
from oncofed.common.errors import ConfigError, DataError
from oncofed.common.ingest import dicom
from oncofed.common.ingest.columns import allowed_clinical, is_age, top_code_age
from oncofed.common.ingest.prepare import Case, PrepareOptions, Staging
from oncofed.common.ingest.tcga.reader import slug
from oncofed.common.ingest.text import read_table
from oncofed.common.paths import pseudonym_salt
from oncofed.common.quarantine import Quarantined
from oncofed.common.registry import suggestion

TABLE_SUFFIXES = {".csv", ".tsv", ".xlsx", ".xls"}
NIFTI = re.compile(r"\.nii(\.gz)?$", re.I)


def nifti_stem(path: Path) -> str:
    return NIFTI.sub("", path.name)


def spacing_site(zooms: tuple[float, ...]) -> str:
    """Site proxy from voxel spacing: slice-thickness and pixel-size groups."""
    z = zooms[2] if len(zooms) > 2 else 0.0
    thick = "thin" if z <= 1.5 else "medium" if z <= 3.0 else "thick"
    pixel = "fine" if min(zooms[:2]) < 0.7 else "coarse"
    return f"{thick}-slices-{pixel}-pixels"


@dataclass
class ImageCase:
    """An image (and mask) found for one patient before the label is decided."""

    raw_id: str  # as in the source (never written out)
    case_id: str  # pseudonym
    site: str
    files: dict[str, Path]
    tumour: bool | None  # None: no tumour information in the mask
    fields: dict[str, Any]
    source: str = ""  # the file or folder under --root it was read from


def check_nifti_pair(
    image: Path, mask: Path | None, allowed: set[int]
) -> tuple[tuple[float, ...], bool | None]:
    """Spacing of ``image`` and whether ``mask`` shows tumour; ``ValueError`` with
    the reason if the pair is unusable."""
    import nibabel as nib

    img: Any = nib.load(image)
    if len(img.shape) != 3:
        raise ValueError(f"image shape {tuple(img.shape)} is not 3-D")
    check_nifti(img, str(image))
    np.asarray(img.dataobj)  # the whole array: a truncated file fails here
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    if mask is None:
        return zooms, None
    m: Any = nib.load(mask)
    if tuple(m.shape) != tuple(img.shape):
        raise ValueError(f"mask shape {tuple(m.shape)} differs from image {img.shape}")
    check_nifti(m, str(mask))
    values = set(np.unique(np.asarray(m.dataobj)).astype(int).tolist())
    if not values <= allowed:
        raise ValueError(
            f"mask labels {sorted(values - allowed)} not among {sorted(allowed)}"
        )
    return zooms, 2 in values if 2 in allowed else None


def copy_nifti(src: Path, staging: Staging, case_id: str, kind: str) -> Path:
    """Write ``src`` afresh: its voxels, affine, data type and voxel size only.
    The source header's free-text fields (``descrip``, ``aux_file``, ``intent_name``,
    ``db_name``) and extensions, where scanners and converters leave names and
    dates, are not carried over."""
    import nibabel as nib

    img: Any = nib.load(src)
    out = nib.Nifti1Image(
        np.asanyarray(img.dataobj), img.affine, dtype=img.get_data_dtype()
    )
    out.header.set_zooms(img.header.get_zooms()[:3])
    out.header.set_xyzt_units("mm")
    out.set_qform(img.affine, code=1)
    out.set_sform(img.affine, code=1)
    dst = staging.path(case_id, f"{case_id}-{kind}.nii.gz")
    nib.save(out, dst)
    return dst


def read_nifti_pairs(
    pairs: list[tuple[str, Path, Path | None]],
    staging: Staging,
    allowed: set[int],
    progress: Callable[[str], None],
    site_of: Callable[[str, tuple[float, ...]], str] | None = None,
) -> tuple[list[ImageCase], list[Quarantined]]:
    """Check and copy (raw_id, image, mask) triples."""
    salt = pseudonym_salt()
    found, quarantined = [], []
    for raw_id, image, mask in pairs:
        progress(image.name)
        case_id = dicom.pseudonym(raw_id, salt)
        try:
            zooms, tumour = check_nifti_pair(image, mask, allowed)
        except Exception as err:  # noqa: BLE001 - any reader failure quarantines
            bad = image if "mask" not in str(err) else mask
            quarantined.append(
                Quarantined(case_id, str(bad), dicom._short(err), "NIfTI")
            )
            continue
        files = {"ct_path": copy_nifti(image, staging, case_id, "image")}
        if mask is not None:
            files["mask_path"] = copy_nifti(mask, staging, case_id, "mask")
        site = site_of(raw_id, zooms) if site_of else spacing_site(zooms)
        found.append(
            ImageCase(
                raw_id, case_id, slug(site), files, tumour, {"spacing": zooms},
                str(image),
            )
        )  # fmt: skip
    return found, quarantined


def group_series(
    sc: dicom.DicomScan, accepted: set[str], allow_burned_in: bool
) -> tuple[dict[str, list[str]], list[Quarantined]]:
    """Series per patient, by the standard's identifiers.

    The key is the PatientID; a blank or placeholder PatientID (an anonymiser's
    ``ANONYMOUS``) falls back to the StudyInstanceUID, and so does a PatientID
    shared by series whose PatientSex or PatientBirthDate differ (different people
    under one ID); a study that still mixes them is quarantined as ambiguous.
    Series of a modality the dataset does not accept, and series with burned-in
    annotation (unless allowed), are quarantined with the reason."""
    quarantined: list[Quarantined] = []
    groups: dict[str, list[str]] = {}
    for uid, info in sorted(sc.info.items()):
        where = str(sc.series[uid][0].parent)
        if info.modality not in accepted:
            quarantined.append(
                Quarantined(
                    "", where,
                    f"modality {info.modality} is not accepted by this dataset "
                    f"({', '.join(sorted(accepted))})", "Modality",
                )
            )  # fmt: skip
            continue
        if info.burned_in and not allow_burned_in:
            quarantined.append(
                Quarantined(
                    "", where,
                    "BurnedInAnnotation = YES: the pixels may show identifying text; "
                    "check the series, then pass --allow-burned-in",
                    "BurnedInAnnotation",
                )
            )  # fmt: skip
            continue
        pid = info.patient_id
        key = pid if pid.lower() not in dicom.PLACEHOLDER_IDS else ""
        groups.setdefault(key or f"study:{info.study_uid}", []).append(uid)
    out: dict[str, list[str]] = {}
    for key, uids in groups.items():
        people = {(sc.info[u].patient_sex, sc.info[u].birth_date) for u in uids}
        if key.startswith("study:") or len(people) == 1:
            out[key] = uids
            continue
        for u in uids:  # one PatientID, several people: split by study
            study = sc.info[u].study_uid
            out.setdefault(f"{key}/study:{study}", []).append(u)
    for key, uids in list(out.items()):
        people = {(sc.info[u].patient_sex, sc.info[u].birth_date) for u in uids}
        no_study = key.startswith("study:") and not dicom.valid_uid(key[6:])
        if len(people) > 1 or no_study:
            del out[key]
            for u in uids:
                quarantined.append(
                    Quarantined(
                        "", str(sc.series[u][0].parent),
                        "cannot tell which patient this series belongs to (blank or "
                        "shared PatientID, and its study mixes patients or has no "
                        "valid StudyInstanceUID)", "PatientID",
                    )
                )  # fmt: skip
    return out, quarantined


def read_dicom_images(
    root: Path,
    staging: Staging,
    progress: Callable[[str], None],
    accepted: set[str] | None = None,
    allow_burned_in: bool = False,
) -> tuple[list[ImageCase], list[Quarantined], list[str]]:
    """Every accepted series under ``root`` with its DICOM-SEG (if any), as NIfTI.

    One series per patient: the one a segmentation references, else the one with
    the most slices; when it cannot be assembled the next candidate is tried (the
    others are named in the notes, not used).
    """
    salt = pseudonym_salt()
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    sc = dicom.scan(paths)
    groups, quarantined = group_series(sc, accepted or {"CT"}, allow_burned_in)
    quarantined = list(sc.quarantined) + quarantined
    notes: list[str] = []
    seg_for_series = {ref: seg for seg, ref in sc.seg_refs.items()}
    for seg, ref in sorted(sc.seg_refs.items()):
        if ref not in sc.series:
            quarantined.append(
                Quarantined(
                    "", str(seg),
                    f"the segmentation references series {ref}, which is not under "
                    "--root", "ReferencedSeriesSequence",
                )
            )  # fmt: skip
    found = []
    for raw, uids in sorted(groups.items()):
        uids.sort(key=lambda u: (u not in seg_for_series, -len(sc.series[u])))
        case_id = dicom.pseudonym(raw, salt)
        progress(case_id)
        for k, uid in enumerate(uids):
            case = _dicom_case(sc, uid, raw, case_id, seg_for_series, staging)
            if not isinstance(case, Quarantined):
                found.append(case[0])
                quarantined += case[1]
                notes += case[2]
                if len(uids) > 1:
                    notes.append(f"{case_id}: {len(uids) - 1} other series not used")
                break
            quarantined.append(case)
            if k + 1 < len(uids):
                notes.append(f"{case_id}: series {k + 1} unusable, trying the next")
    return found, quarantined, notes


def _dicom_case(
    sc: dicom.DicomScan,
    uid: str,
    raw: str,
    case_id: str,
    seg_for_series: dict[str, Path],
    staging: Staging,
) -> tuple[ImageCase, list[Quarantined], list[str]] | Quarantined:
    """One series (and its SEG) as a case with what was set aside on the way, or
    why it cannot be one."""
    try:
        series = dicom.load_series(sc.series[uid], case_id)
    except Exception as err:  # noqa: BLE001
        return Quarantined(
            case_id, str(sc.series[uid][0].parent), dicom._short(err), "series"
        )
    quarantined, notes = list(series.quarantined), []
    vol = series.volume
    arr = np.asarray(vol.array)  # type: ignore[attr-defined]
    files = {"ct_path": staging.path(case_id, f"{case_id}-image.nii.gz")}
    dicom.write_nifti(vol, arr.astype(np.int16), files["ct_path"])
    tumour = None
    if uid in seg_for_series:
        try:
            labels, ignored = dicom.seg_to_labels(seg_for_series[uid], series)
        except Exception as err:  # noqa: BLE001
            quarantined.append(
                Quarantined(case_id, str(seg_for_series[uid]), dicom._short(err), "SEG")
            )
        else:
            files["mask_path"] = staging.path(case_id, f"{case_id}-mask.nii.gz")
            dicom.write_nifti(vol, labels, files["mask_path"])
            tumour = bool((labels == 2).any())
            if ignored:
                notes.append(f"{case_id}: segments ignored: {', '.join(ignored)}")
    f = series.fields
    site = f"{f.get('Manufacturer', 'unknown')} {f.get('ManufacturerModelName', '')}"
    return (
        ImageCase(
            raw,
            case_id,
            slug(site),
            files,
            tumour,
            dict(f),
            str(sc.series[uid][0].parent),
        ),  # fmt: skip
        quarantined,
        notes,
    )


def read_clinical_tables(
    root: Path, raw_ids: set[str], extra: tuple[str, ...] = ()
) -> tuple[
    dict[str, dict[str, Any] | None], list[dict[str, str]], list[Quarantined], list[str]
]:
    """Rows of the spreadsheets under ``root`` whose ID column matches ``raw_ids``.

    Only columns on the clinical allow-list (and ``extra``, the --label-column)
    are kept; ages over 89 become 90. Returns raw_id -> row, the sources used, what
    was quarantined and notes.
    """
    rows: dict[str, dict[str, Any] | None] = {}
    sources, quarantined, notes = [], [], []
    for path in sorted(
        p for p in root.rglob("*") if p.suffix.lower() in TABLE_SUFFIXES
    ):
        try:
            frame = read_table(path)
        except Exception as err:  # noqa: BLE001
            quarantined.append(Quarantined("", str(path), dicom._short(err), "table"))
            continue
        id_col = _id_column(frame, raw_ids)
        if id_col is None:
            continue
        sources.append({"file": str(path), "role": "clinical-table"})
        dropped = [
            c
            for c in frame.columns
            if c != id_col and not allowed_clinical(str(c), extra)
        ]
        if dropped:
            names = ", ".join(map(str, dropped))
            notes.append(
                f"{path.name}: columns not on the clinical allow-list dropped "
                f"(common/ingest/columns.py; --label-column keeps one): {names}"
            )
        keep = [c for c in frame.columns if c != id_col and c not in dropped]
        numeric = [c for c in keep if _mostly_numeric(frame[c])]
        for rec in frame.to_dict("records"):
            raw = str(rec[id_col]).strip()
            if raw in rows:
                quarantined.append(
                    Quarantined(
                        dicom.pseudonym(raw, pseudonym_salt()),
                        str(path),
                        "patient listed twice in the clinical table",
                        str(id_col),
                    )
                )
                continue
            row = {str(c): _value(rec[c]) for c in keep}
            for c in keep:  # ages over 89 are reported as 90 (90 or older)
                if is_age(str(c)) and isinstance(row[str(c)], float):
                    row[str(c)] = top_code_age(row[str(c)])
            wrong = [c for c in numeric if isinstance(row[str(c)], str)]
            if wrong:
                c = wrong[0]
                quarantined.append(
                    Quarantined(
                        dicom.pseudonym(raw, pseudonym_salt()),
                        str(path),
                        f"{row[str(c)]!r} is not a number (the column is numeric)",
                        str(c),
                    )
                )
                rows[raw] = None  # known patient, unusable record
                continue
            rows[raw] = row
    return rows, sources, quarantined, notes


def _mostly_numeric(column: pd.Series) -> bool:
    """At least 80 % of the present cells parse as numbers."""
    present = [x for x in map(_value, column) if x is not None]
    if not present:
        return False
    return sum(isinstance(x, float) for x in present) / len(present) >= 0.8


def _id_column(frame: pd.DataFrame, raw_ids: set[str]) -> Any:
    best, best_n = None, 0
    for c in frame.columns:
        n = len(set(frame[c].astype(str).str.strip()) & raw_ids)
        if n > best_n:
            best, best_n = c, n
    return best


def _value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        text = str(v).strip()
        return text or None


def _check_label_column(
    column: str, clinical: dict[str, dict[str, Any] | None]
) -> None:
    """Refuse --label-column up front where there is no clinical table, or where
    no table has that column (naming the closest, matched case-insensitively)."""
    if not clinical:
        raise ConfigError(
            f"--label-column {column!r}: no clinical table was read for this "
            "dataset (its label comes from the tumour masks); leave the option out, "
            "or add the table to --root"
        )
    seen = sorted({c for row in clinical.values() if row for c in row})
    if column in seen:
        return
    same = [c for c in seen if c.lower() == column.lower()]
    hint = f" Did you mean {same[0]!r}?" if same else suggestion(column, seen)
    raise DataError(
        "clinical table",
        column,
        f"--label-column names a column that is missing (columns kept: "
        f"{', '.join(seen) or 'none'})",
        f"give one of those columns.{hint}",
    )


def build_cases(
    images: list[ImageCase],
    clinical: dict[str, dict[str, Any] | None],
    opts: PrepareOptions,
    fixed_label: int | None,
    table_files: str = "",
) -> tuple[list[Case], list[Quarantined]]:
    """Decide each case's label (mask, fixed, or ``--label-column``); a case
    whose label cannot be decided is quarantined citing its source under --root
    (the image, or ``table_files`` for a label column)."""
    if opts.label_column:
        _check_label_column(opts.label_column, clinical)
    cases, quarantined = [], []
    for im in images:
        if im.raw_id in clinical and clinical[im.raw_id] is None:
            continue  # its clinical record was quarantined (reason recorded there)
        row = clinical.get(im.raw_id)
        label: int | None
        if opts.label_column:
            value = (row or {}).get(opts.label_column)
            label = _binary(value)
            if label is None:
                quarantined.append(
                    Quarantined(
                        im.case_id,
                        table_files or "clinical table",
                        f"label column value {value!r} is not 0/1",
                        opts.label_column,
                    )
                )
                continue
        elif im.tumour is not None:
            label = int(im.tumour)
        elif fixed_label is not None:
            label = fixed_label
        else:
            quarantined.append(
                Quarantined(
                    im.case_id,
                    im.source or str(im.files["ct_path"].name),
                    "no tumour mask and no --label-column to decide the label",
                    "label",
                )
            )
            continue
        cases.append(
            Case(
                case_id=im.case_id,
                site=im.site,
                label=label,
                clinical=row,
                files=im.files,
            )
        )
    return cases, quarantined


def _binary(value: Any) -> int | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("1", "1.0", "yes", "true", "dead", "deceased", "positive"):
        return 1
    if text in ("0", "0.0", "no", "false", "alive", "living", "negative"):
        return 0
    return None


def require_found(root: Path, n: int, what: str, fix: str) -> None:
    if n == 0:
        raise DataError(root, "--root", f"no {what} found", fix)
