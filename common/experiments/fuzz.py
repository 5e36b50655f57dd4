"""Fuzz the readers: mutate one file of a folder, read it, account for every row.

Shared by ``tests/test_fuzz.py`` (a small budget in CI) and
``benchmarks/fuzz_readers.py`` (10,000 cases). A seeded mutator damages one file
the way disks and editors do (a flipped or deleted byte, a stray quote or
delimiter, two rows merged or one split, a duplicated line, a truncation, bytes
that are not UTF-8), then the reader runs on the copy. Each case ends as one of:

* ``read``: every row loaded, nothing set aside;
* ``quarantined``: the reader went on and set rows aside with a reason;
* ``refused``: a clear ``OncoFedError`` naming the file (a damaged header);
* ``crashed``: any other exception (a bug);
* ``lost``: the reader went on but a row is neither loaded nor set aside, or a
  case was loaded without data its manifest says it has (a bug, and silent).
"""

from __future__ import annotations

import shutil
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from oncofed.common.errors import OncoFedError
from oncofed.common.ingest.prepare import PrepareOptions, prepare

MUTATIONS = (
    "flip-byte", "delete-byte", "stray-quote", "stray-delimiter", "merge-rows",
    "split-row", "duplicate-line", "truncate", "not-utf8",
)  # fmt: skip
OUTCOMES = ("read", "quarantined", "refused", "crashed", "lost")


def mutate(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """``data`` with one damage of ``kind`` at a random place."""
    if not data:
        return data
    at = int(rng.integers(0, len(data)))
    if kind == "flip-byte":
        b = bytearray(data)
        b[at] ^= int(rng.integers(1, 256))
        return bytes(b)
    if kind == "delete-byte":
        return data[:at] + data[at + 1 :]
    if kind == "stray-quote":
        return data[:at] + b'"' + data[at:]
    if kind == "stray-delimiter":
        return data[:at] + (b"\t" if rng.random() < 0.5 else b",") + data[at:]
    if kind == "merge-rows":
        ends = [i for i, c in enumerate(data[:-1]) if c == 0x0A]
        if not ends:
            return data
        i = ends[int(rng.integers(0, len(ends)))]
        return data[:i] + data[i + 1 :]
    if kind == "split-row":
        return data[:at] + b"\n" + data[at:]
    if kind == "duplicate-line":
        lines = data.split(b"\n")
        k = int(rng.integers(0, len(lines)))
        return b"\n".join([*lines[: k + 1], lines[k], *lines[k + 1 :]])
    if kind == "truncate":
        return data[:at]
    if kind == "not-utf8":
        return data[:at] + b"\xff\xfe\xc3" + data[at:]
    raise ValueError(f"unknown mutation {kind!r}")


@dataclass
class FuzzReport:
    """Counts per outcome (and per mutation), with a few examples of each bug."""

    tried: int = 0
    outcomes: Counter = field(default_factory=Counter)
    by_mutation: dict[str, Counter] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, mutation: str, target: str, outcome: str, detail: str = "") -> None:
        self.tried += 1
        self.outcomes[outcome] += 1
        self.by_mutation.setdefault(mutation, Counter())[outcome] += 1
        if outcome in ("crashed", "lost") and detail:
            seen = self.examples.setdefault(outcome, [])
            if len(seen) < 5:
                seen.append(f"{mutation} of {target}: {detail}")


# a reader under test: folder -> (rows it should account for, rows loaded, rows
# set aside, loaded rows missing data their manifest promises)
Reader = Callable[[Path], tuple[int, int, int, int]]


def fuzz_folder(
    folder: Path,
    targets: list[str],
    reader: Reader,
    cases: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> FuzzReport:
    """Run ``cases`` mutants of ``folder`` (one file of ``targets`` damaged each
    time) through ``reader`` and classify each outcome."""
    rng = np.random.default_rng(seed)
    report = FuzzReport()
    with tempfile.TemporaryDirectory(prefix="oncofed-fuzz-") as tmp:
        work = Path(tmp) / folder.name
        shutil.copytree(folder, work)
        originals = {t: (folder / t).read_bytes() for t in targets}
        for k in range(cases):
            target = targets[int(rng.integers(0, len(targets)))]
            kind = MUTATIONS[int(rng.integers(0, len(MUTATIONS)))]
            (work / target).write_bytes(mutate(originals[target], kind, rng))
            try:
                expected, loaded, set_aside, hollow = reader(work)
            except OncoFedError:
                report.add(kind, target, "refused")
            except Exception as err:  # noqa: BLE001 - the bug being counted
                last = traceback.extract_tb(err.__traceback__)[-1]
                where = f"{Path(last.filename).name}:{last.lineno}"
                report.add(kind, target, "crashed", f"{err!r} at {where}")
            else:
                if hollow or loaded + set_aside < expected:
                    report.add(
                        kind, target, "lost",
                        f"{expected} rows, {loaded} loaded, {set_aside} set aside, "
                        f"{hollow} loaded without promised data",
                    )  # fmt: skip
                elif set_aside:
                    report.add(kind, target, "quarantined")
                else:
                    report.add(kind, target, "read")
            (work / target).write_bytes(originals[target])
            if progress:
                progress(k + 1)
    return report


def site_reader(cfg) -> Reader:  # noqa: ANN001 - a DataConfig
    """:func:`common.data.site.load_site` as a fuzz reader: rows = the non-blank
    data lines of the (damaged) manifest."""
    from oncofed.common.data.site import load_site
    from oncofed.common.keys import CLINICAL, GENOMICS, present_key

    def read(folder: Path) -> tuple[int, int, int, int]:
        lines = (folder / "manifest.csv").read_bytes().split(b"\n")[1:]
        expected = sum(1 for ln in lines if ln.strip())
        data = load_site(folder, cfg)
        loaded = [s for split in data.splits.values() for s in split]
        flags = _flags(folder)
        hollow = sum(
            1
            for s in loaded
            for m, flag in ((CLINICAL, "has_clinical"), (GENOMICS, "has_genomics"))
            if flags.get(s["case_id"], {}).get(flag) == "1" and s[present_key(m)] == 0.0
        )
        return expected, len(loaded), len(data.quarantined), hollow

    return read


def _flags(folder: Path) -> dict[str, dict[str, str]]:
    """has_clinical / has_genomics per case from the readable manifest rows."""
    from oncofed.common.data.rows import read_rows

    try:
        rows = read_rows(folder / "manifest.csv", ",", "case_id")
    except OncoFedError:
        return {}
    return {r["case_id"]: r for r in rows.rows}


# ---------------------------------------------------------------- downloads
def prepare_reader(tmp: Path, dataset: str, label: str | None = None) -> Reader:
    """``prepare DATASET`` as a fuzz reader: outcomes only (no row accounting)."""
    counter = iter(range(10**9))
    opts = PrepareOptions(min_site_cases=1, label=label)

    def read(folder: Path) -> tuple[int, int, int, int]:
        out = tmp / f"out-{next(counter)}"
        try:
            report = prepare(dataset, folder, out, opts, False)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return 0, report["cases_kept"], len(report["quarantined"]), 0

    return read


def cbioportal_download(raw: Path, out: Path) -> Path:
    """The synthetic export's patients as a cBioPortal study (patient file with its
    four ``#`` rows, sample file, ``meta_study.txt``), per cBioPortal's file-format
    documentation."""
    import pandas as pd

    gdc = pd.read_csv(raw / "clinical.tsv", sep="\t", dtype=str, keep_default_na=False)
    key = "case_submitter_id" if "case_submitter_id" in gdc else "cases.submitter_id"
    ids = list(dict.fromkeys(gdc[key]))
    out.mkdir(parents=True)
    cols = ["PATIENT_ID", "OS_STATUS", "OS_MONTHS", "AGE", "SEX",
            "AJCC_PATHOLOGIC_TUMOR_STAGE"]  # fmt: skip
    lines = [
        "#" + "\t".join(cols),
        "#" + "\t".join(cols),
        "#" + "\t".join(["STRING"] * 6),
        "#" + "\t".join(["1"] * 6),
        "\t".join(cols),
    ]
    for i, b in enumerate(ids):
        lines.append("\t".join([b, "1:DECEASED" if i % 3 == 0 else "0:LIVING",
                                f"{5 + i % 40}.5", str(40 + i % 40), "Male",
                                "STAGE IIIA" if i % 2 else "STAGE I"]))  # fmt: skip
    (out / "data_clinical_patient.txt").write_text("\n".join(lines) + "\n")
    samples = ["#a\tb", "#a\tb", "#STRING\tSTRING", "#1\t1", "PATIENT_ID\tSAMPLE_ID"]
    samples += [f"{b}\t{b}-01" for b in ids]
    (out / "data_clinical_sample.txt").write_text("\n".join(samples) + "\n")
    (out / "meta_study.txt").write_text(
        "type_of_cancer: lihc\ncancer_study_identifier: lihc_tcga\nname: LIHC\n"
    )
    return out


def dicom_download(shared_data: Path, out: Path, excel: bool = False) -> Path | None:
    """The real 3-slice liver CT with its DICOM-SEG from ``shared_data`` (None
    when it is not there) and a clinical table (``excel``: as a user's ``.xlsx``)."""
    src = shared_data / "dcmqi_liver_ct3slice_seg"
    if not src.is_dir():
        return None
    out.mkdir(parents=True)
    for k, f in enumerate(sorted((src / "ct-3slice").glob("*.dcm"))):
        shutil.copy(f, out / f"slice{k}.dcm")
    shutil.copy(src / "liver.dcm", out / "seg.dcm")
    if excel:
        import pandas as pd

        table = pd.DataFrame({"PatientID": ["99000"], "age": [61], "sex": ["F"]})
        table.to_excel(out / "clinical.xlsx", index=False)
    else:
        (out / "clinical.csv").write_text("PatientID,age,sex\n99000,61,F\n")
    return out


def flamby_download(shared_data: Path, out: Path) -> Path | None:
    """FLamby's real Fed-TCGA-BRCA files (``brca.csv``, ``centers.csv``,
    ``train_test_split.csv``) from ``shared_data`` (None when not there)."""
    src = shared_data / "flamby_tcga_brca"
    if not src.is_dir():
        return None
    out.mkdir(parents=True)
    for name in ("brca.csv", "centers.csv", "train_test_split.csv"):
        if (src / name).is_file():
            shutil.copy(src / name, out / name)
    return out


SLIDE_PATIENTS = 6


def slide_download(shared_data: Path, out: Path) -> Path | None:
    """Histology as TCGA ships it, from ``shared_data`` (None when not there): the
    real GDC clinical rows of a few TCGA-COAD patients, the real TCGA tiles of
    TCGA-AD-6964 and the small Aperio slide (OpenSlide's CMU-1-Small-Region, named
    after another of those patients: the damage, not the tissue, is under test).
    Read with ``--label os-event``, as these patients have no AJCC stage."""
    clinical = shared_data / "tcga_coad_gdc" / "clinical.tsv"
    tiles = (
        shared_data / "histology_he" / "mopadi_tcga_tiles" / "TCGA-AD-6964-01Z-00-DX1"
    )
    slide = shared_data / "histology_he" / "cmu_small_region.svs"
    if not (clinical.is_file() and tiles.is_dir() and slide.is_file()):
        return None
    lines = clinical.read_text(encoding="utf-8").splitlines()
    key = lines[0].split("\t").index("cases.submitter_id")
    ids = ["TCGA-AD-6964"]
    for ln in lines[1:]:
        b = ln.split("\t")[key]
        if b not in ids and len(ids) < SLIDE_PATIENTS:
            ids.append(b)
    out.mkdir(parents=True)
    keep = [ln for ln in lines[1:] if ln.split("\t")[key] in ids]
    (out / "clinical.tsv").write_text("\n".join([lines[0], *keep]) + "\n")
    for k, tile in enumerate(sorted(tiles.glob("*.jpg"))):
        shutil.copy(tile, out / f"TCGA-AD-6964-01Z-00-DX1-tile{k}.jpg")
    shutil.copy(slide, out / f"{ids[1]}-01Z-00-DX1.svs")
    return out


def nifti_download(out: Path) -> Path:
    """Four LiTS-style pairs (``volume-N.nii`` / ``segmentation-N.nii.gz``)."""
    import nibabel as nib
    import numpy as np

    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n in range(4):
        vol = rng.normal(40, 20, (16, 16, 6)).astype(np.int16)
        seg = np.zeros((16, 16, 6), np.uint8)
        seg[4:12, 4:12, 1:5] = 1
        seg[6:8, 6:8, 2:3] = 2 * (n % 2)
        nib.save(nib.Nifti1Image(vol, np.eye(4)), out / f"volume-{n}.nii")
        nib.save(nib.Nifti1Image(seg, np.eye(4)), out / f"segmentation-{n}.nii.gz")
    return out
