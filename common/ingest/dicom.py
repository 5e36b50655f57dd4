"""DICOM ingest: series -> HU volume, DICOM-SEG -> aligned label map, de-identified.

* Files are recognised as DICOM by content (any name, any suffix), grouped by
  ``SeriesInstanceUID``; a file pydicom cannot parse is quarantined with the reason.
* A series is assembled by highdicom's ``get_volume_from_series``: slices sorted by
  their position along the slice normal, the modality LUT applied (rescale slope and
  intercept, so CT comes out in Hounsfield units), the affine built from Image
  Position / Orientation and Pixel Spacing. An irregular series (missing slice,
  mixed orientation) is refused by highdicom and quarantined with its message.
* A DICOM-SEG is read with highdicom and mapped onto its source series' voxel grid
  with ``Volume.match_geometry`` (axis permutation, flips, padding, cropping; no
  resampling). Segments are mapped to LiTS labels by their label text: liver -> 1,
  tumour / lesion / metastasis -> 2.
* De-identification on ingest: nothing of the DICOM header is written except the
  geometry (inside the NIfTI) and the whitelisted acquisition fields in
  :data:`SAFE_FIELDS`. Case IDs are pseudonyms: a salted SHA-256 of the Patient ID,
  stable for a given salt, so manifests, logs and run stores carry no names, birth
  dates or record numbers.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oncofed.common.data.limits import check_dicom
from oncofed.common.quarantine import Quarantined

# acquisition fields kept (no identity, no dates, no institution)
SAFE_FIELDS = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "SliceThickness",
    "KVP",
    "ConvolutionKernel",
)
IMAGE_MODALITIES = {"CT", "MR"}
LIVER_WORDS = ("liver",)
TUMOUR_WORDS = ("tumor", "tumour", "lesion", "metast", "cancer", "hcc")


@dataclass(frozen=True)
class SeriesInfo:
    """Header fields of one series that decide grouping and acceptance (kept in
    memory only, never written)."""

    patient_id: str
    study_uid: str
    modality: str
    burned_in: bool
    patient_sex: str = ""
    birth_date: str = ""


@dataclass
class DicomScan:
    """What a folder holds: image series, segmentations and unreadable files."""

    series: dict[str, list[Path]] = field(default_factory=dict)
    # SEG file -> the SeriesInstanceUID it segments
    seg_refs: dict[Path, str] = field(default_factory=dict)
    # SeriesInstanceUID -> its header fields (first slice)
    info: dict[str, SeriesInfo] = field(default_factory=dict)
    quarantined: list[Quarantined] = field(default_factory=list)


# DICOM UIDs: digits and dots, at most 64 characters (PS3.5 9.1)
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"  # a DICOMDIR: an index, not an image
# Patient IDs anonymisers put on every study: never a patient's identity
PLACEHOLDER_IDS = {"", "anonymous", "anon", "anonymized", "unknown", "none", "0", "na"}


def valid_uid(uid: str) -> bool:
    return len(uid) <= 64 and bool(_UID.match(uid))


def is_dicom(path: Path) -> bool:
    """DICOM Part 10 files carry ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def scan(paths: list[Path]) -> DicomScan:
    """Group the DICOM files among ``paths`` by series; headers only, each read
    once."""
    import pydicom

    out = DicomScan()
    series: dict[str, list[Path]] = defaultdict(list)
    for p in paths:
        if not is_dicom(p):
            continue
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            if (
                p.name.upper() == "DICOMDIR"
                or str(ds.file_meta.get("MediaStorageSOPClassUID", ""))
                == MEDIA_DIRECTORY
            ):
                continue  # the index of a DICOM medium: skipped quietly
            modality = str(ds.Modality)
            uid = str(ds.SeriesInstanceUID).strip()
        except Exception as err:  # noqa: BLE001 - unreadable header: quarantine
            out.quarantined.append(Quarantined("", str(p), _short(err), "DICOM header"))
            continue
        if not valid_uid(uid):
            out.quarantined.append(
                Quarantined(
                    "", str(p),
                    f"SeriesInstanceUID {uid[:70]!r} is not a valid UID (digits and "
                    "dots, at most 64 characters): the slice cannot be placed in a "
                    "series", "SeriesInstanceUID",
                )
            )  # fmt: skip
            continue
        if modality == "SEG":
            try:
                out.seg_refs[p] = str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)
            except Exception as err:  # noqa: BLE001 - a SEG that names no series
                out.quarantined.append(Quarantined("", str(p), _short(err), "SEG"))
        elif modality in IMAGE_MODALITIES:
            series[uid].append(p)
            if uid not in out.info:
                out.info[uid] = SeriesInfo(
                    patient_id=str(ds.get("PatientID", "") or "").strip(),
                    study_uid=str(ds.get("StudyInstanceUID", "") or "").strip(),
                    modality=modality,
                    burned_in=str(ds.get("BurnedInAnnotation", "")).upper() == "YES",
                    patient_sex=str(ds.get("PatientSex", "") or ""),
                    birth_date=str(ds.get("PatientBirthDate", "") or ""),
                )
    out.series = dict(series)
    return out


def pseudonym(patient_id: str, salt: str) -> str:
    """Stable pseudonymous case ID for a Patient ID (salted SHA-256, 12 hex)."""
    digest = hashlib.sha256(f"{salt}\0{patient_id}".encode()).hexdigest()
    return f"case-{digest[:12]}"


@dataclass
class Series:
    """An assembled image series and its safe acquisition fields."""

    volume: Any  # highdicom.Volume, (slices, rows, columns) in patient space
    sop_uids: list[str]
    fields: dict[str, str]
    quarantined: list[Quarantined]


def load_series(paths: list[Path], case_id: str) -> Series:
    """Read the slices and assemble them; unreadable slices are quarantined and the
    rest assembled only if they still form a regular series (else ``ValueError``)."""
    import highdicom as hd
    import pydicom

    datasets, quarantined = [], []
    for p in sorted(paths):
        try:
            check_dicom(pydicom.dcmread(p, stop_before_pixels=True), str(p))
            ds = pydicom.dcmread(p)
            _ = ds.pixel_array  # decode now: a truncated file fails here
            datasets.append(ds)
        except Exception as err:  # noqa: BLE001 - one bad slice is quarantined
            quarantined.append(Quarantined(case_id, str(p), _short(err), "PixelData"))
    if not datasets:
        raise ValueError("no readable slice in the series")
    volume = hd.get_volume_from_series(datasets, dtype=np.float32)
    first = datasets[0]
    safe = {k: str(first.get(k)) for k in SAFE_FIELDS if first.get(k) is not None}
    return Series(volume, [str(d.SOPInstanceUID) for d in datasets], safe, quarantined)


def seg_to_labels(seg_path: Path, series: Series) -> tuple[np.ndarray, list[str]]:
    """LiTS label map (0/1/2) of a DICOM-SEG on ``series``' voxel grid.

    Returns the map in the series volume's array order and the segment labels that
    were not recognised (ignored).
    """
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    refs = {uid for _, _, uid in seg.get_source_image_uids()}
    if not refs & set(series.sop_uids):
        raise ValueError("the segmentation references none of the series' slices")
    out = np.zeros(series.volume.spatial_shape, dtype=np.uint8)  # type: ignore[attr-defined]
    ignored = []
    for item in seg.SegmentSequence:
        name = str(item.SegmentLabel).lower()
        if any(w in name for w in TUMOUR_WORDS):
            value = 2
        elif any(w in name for w in LIVER_WORDS):
            value = 1
        else:
            ignored.append(str(item.SegmentLabel))
            continue
        vol = seg.get_volume(segment_numbers=[int(item.SegmentNumber)])
        arr = vol.match_geometry(series.volume).array
        arr = arr.reshape(out.shape) if arr.ndim > out.ndim else arr
        if value == 2:
            out[arr > 0] = 2
        else:
            out[(arr > 0) & (out == 0)] = 1
    return out, ignored


def write_nifti(volume: Any, array: np.ndarray, path: Path) -> None:
    """Write ``array`` on ``volume``'s grid as NIfTI (RAS affine from highdicom)."""
    img = volume.with_array(array).to_nibabel()  # type: ignore[attr-defined]
    img.header.set_xyzt_units("mm")
    import nibabel as nib

    nib.save(img, path)


def _short(err: Exception) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) < 200 else text[:197] + "..."
