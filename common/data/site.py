"""Read a prepared site folder into sample dicts, quarantining bad cases.

A sample dict holds every modality, present or not: ``ct`` (float tensor
(1, S, S, D)), ``clinical`` and ``genomics`` (float vectors encoded by the folder's
``schema.json``, :mod:`common.data.schema`), ``histology`` (uint8 bag
(bag_size, 3, tile_size, tile_size)), each with its presence flag ``<m>_present``
(1.0 present, 0.0 absent: the model substitutes a learned embedding), plus
``label`` (float 0/1), ``site`` and ``case_id``. A case that fails to load is
quarantined with the file and the reason, logged, counted, and the site goes on
with the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from oncofed.common.config import HU_HARMONISERS, DataConfig
from oncofed.common.data.clinical import ClinicalValueError
from oncofed.common.data.histology import bag_tensor, load_bag
from oncofed.common.data.impute import mice_fill
from oncofed.common.data.limits import check_nifti
from oncofed.common.data.rows import Rows, read_rows
from oncofed.common.data.schema import Schema, load_schema
from oncofed.common.data.transforms import ct_mask_transforms, ct_transforms
from oncofed.common.errors import ConfigError, DataError
from oncofed.common.keys import (
    CASE_ID,
    CLINICAL,
    CT,
    EVENT,
    GENOMICS,
    HISTOLOGY,
    LABEL,
    MASK,
    MODALITIES,
    SITE_KEY,
    TIME,
    present_key,
)
from oncofed.common.quarantine import Quarantined

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
CLINICAL_TSV = "clinical.tsv"
GENOMICS_TSV = "genomics.tsv"
REQUIRED_COLUMNS = (CASE_ID, "split", LABEL, "ct_path", "has_clinical")


@dataclass
class SiteData:
    """One site's cases, split as its manifest says."""

    name: str
    splits: dict[str, list[dict]] = field(default_factory=dict)
    quarantined: list[Quarantined] = field(default_factory=list)
    schema: Schema = field(default_factory=Schema)
    harmonise: dict[str, float] = field(default_factory=dict)  # harmonise-* figures

    @property
    def input_dims(self) -> dict[str, int]:
        """Tabular feature sizes for :func:`common.ml.models.build_model`."""
        return {CLINICAL: self.schema.clinical_dim, GENOMICS: self.schema.genomics_dim}

    def split(self, name: str) -> list[dict]:
        return self.splits.get(name, [])


def read_manifest(site_dir: Path) -> Rows:
    """The site's manifest, line by line (a damaged line is set aside, see
    :mod:`common.data.rows`); raises ``DataError`` if it is missing or its header
    lacks a required column."""
    path = site_dir / MANIFEST
    if not path.is_file():
        raise DataError(
            path,
            MANIFEST,
            "file not found",
            "point data-path / data-root at a prepared site folder",
        )
    rows = read_rows(path, ",", CASE_ID)
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise DataError(
            path,
            ", ".join(missing),
            "required column(s) absent",
            f"the manifest needs columns {', '.join(REQUIRED_COLUMNS)}",
        )
    return rows


def _read_table(site_dir: Path, name: str) -> Rows | None:
    path = site_dir / name
    if not path.is_file():
        return None
    return read_rows(path, "\t", CASE_ID)


class _Rejected(Exception):
    """A case that cannot be used: ``path`` is the file at fault."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path, self.reason = path, reason


class _CaseLoader:
    """Turns one manifest row of a site folder into a sample dict (see the module
    docstring), or raises :class:`_Rejected` naming the file and the reason."""

    def __init__(
        self, site_dir: Path, name: str, cfg: DataConfig, masks: bool, hu: bool = False
    ):
        self.site_dir, self.name, self.cfg, self.masks = site_dir, name, cfg, masks
        self.schema = load_schema(site_dir)
        self.tables = {
            CLINICAL: _read_table(site_dir, CLINICAL_TSV),
            GENOMICS: _read_table(site_dir, GENOMICS_TSV),
        }
        self.records = {
            m: (t.by_key(CASE_ID) if t else {}) for m, t in self.tables.items()
        }
        self.ct_pipeline = ct_transforms(cfg, window=not hu)
        self.joint_pipeline = ct_mask_transforms(cfg, window=not hu)
        self.roi = cfg.ct_roi == "liver"
        self.empty_bag = torch.zeros(
            cfg.bag_size, 3, cfg.tile_size, cfg.tile_size, dtype=torch.uint8
        )
        self.empty_ct = torch.zeros(1, cfg.image_size, cfg.image_size, cfg.image_depth)

    def __call__(self, row: dict) -> dict:
        manifest = str(self.site_dir / MANIFEST)
        if row[LABEL] not in ("0", "1"):
            raise _Rejected(manifest, f"label {row[LABEL]!r} is not 0 or 1")
        sample: dict = {
            CASE_ID: row[CASE_ID],
            SITE_KEY: self.name,
            LABEL: float(row[LABEL]),
            TIME: _float_or_nan(row.get(TIME, "")),
            EVENT: _float_or_nan(row.get(EVENT, "")),
        }
        self._ct(row, sample)
        self._tabular(row, sample)
        self._histology(row, sample)
        if not any(sample[present_key(m)] for m in MODALITIES):
            raise _Rejected(manifest, "case has no modality at all")
        return sample

    def _ct(self, row: dict, sample: dict) -> None:
        """CT (and, for ct-roi = liver or segmentation, its label map)."""
        ct_rel = row["ct_path"].strip()
        mask_rel = row.get("mask_path", "").strip()
        if self.masks:
            sample[MASK] = torch.zeros(self.empty_ct.shape, dtype=torch.uint8)
            sample[present_key(MASK)] = 0.0
        sample[CT], sample[present_key(CT)] = self.empty_ct, 0.0
        if not ct_rel:
            return
        if self.roi and not mask_rel:
            raise _Rejected(
                str(self.site_dir / MANIFEST),
                "ct-roi = 'liver' needs the case's label map, but its mask_path is "
                "empty; add the liver mask or set ct-roi = 'none'",
            )
        if mask_rel and (self.roi or self.masks):
            paths = {
                CT: str(self.site_dir / ct_rel),
                MASK: str(self.site_dir / mask_rel),
            }
            try:
                for p in paths.values():
                    _check_size(Path(p))
                loaded = self.joint_pipeline(paths)
            except Exception as err:  # noqa: BLE001 - any reader failure quarantines
                raise _Rejected(_culprit(err, paths), _reason(err)) from err
            sample[CT], sample[present_key(CT)] = loaded[CT].float(), 1.0
            if self.masks:
                sample[MASK] = loaded[MASK].round().to(torch.uint8)
                sample[present_key(MASK)] = 1.0
            return
        ct_path = self.site_dir / ct_rel
        try:
            _check_size(ct_path)
            sample[CT] = self.ct_pipeline({CT: str(ct_path)})[CT].float()
        except Exception as err:  # noqa: BLE001 - any reader failure quarantines
            raise _Rejected(str(ct_path), _reason(err)) from err
        sample[present_key(CT)] = 1.0

    def _record(self, modality: str, flag: str, row: dict) -> dict | None:
        """The case's row of clinical.tsv / genomics.tsv when the manifest says it
        has one; a row that is missing or was set aside rejects the case (never
        a case silently loaded without the data it has)."""
        if row.get(flag) != "1":
            return None
        record = self.records[modality].get(row[CASE_ID])
        if record is not None:
            return record
        name = CLINICAL_TSV if modality == CLINICAL else GENOMICS_TSV
        table = self.tables[modality]
        bad = table.bad_key(row[CASE_ID]) if table else None
        why = (
            f"its row (line {bad.line}) was set aside: {bad.reason}"
            if bad
            else f"the manifest says {flag} = 1 but {name} has no row for it"
        )
        raise _Rejected(str(self.site_dir / name), why)

    def _tabular(self, row: dict, sample: dict) -> None:
        """Clinical and genomic vectors, encoded by the folder's schema."""
        schema = self.schema
        record = self._record(CLINICAL, "has_clinical", row)
        sample[CLINICAL] = torch.zeros(schema.clinical_dim)
        sample[present_key(CLINICAL)] = 0.0
        if record is not None:
            try:
                sample[CLINICAL] = torch.from_numpy(schema.encode_clinical(record))
            except ClinicalValueError as err:
                raise _Rejected(str(self.site_dir / CLINICAL_TSV), str(err)) from err
            sample[present_key(CLINICAL)] = 1.0
        g = self._record(GENOMICS, "has_genomics", row)
        try:
            sample[GENOMICS] = torch.from_numpy(
                schema.encode_genomics(g)
                if g
                else np.zeros(schema.genomics_dim, np.float32)
            )
        except (ClinicalValueError, ValueError) as err:
            raise _Rejected(str(self.site_dir / GENOMICS_TSV), str(err)) from err
        sample[present_key(GENOMICS)] = 1.0 if g else 0.0

    def _histology(self, row: dict, sample: dict) -> None:
        histo_rel = row.get("histo_path", "").strip()
        sample[HISTOLOGY], sample[present_key(HISTOLOGY)] = self.empty_bag, 0.0
        if not histo_rel:
            return
        try:
            sample[HISTOLOGY] = bag_tensor(
                load_bag(self.site_dir / histo_rel),
                self.cfg.bag_size,
                self.cfg.tile_size,
            )
        except Exception as err:  # noqa: BLE001 - a bad bag quarantines the case
            raise _Rejected(str(self.site_dir / histo_rel), _reason(err)) from err
        sample[present_key(HISTOLOGY)] = 1.0


def _account_table_lines(load_case: _CaseLoader, out: SiteData) -> None:
    """Lines of clinical.tsv / genomics.tsv that were set aside but cost no case
    (a repeated row whose first copy was used, a row no case refers to) are
    listed too, so that every line is read or accounted for."""
    rejected = {q.case_id for q in out.quarantined}
    for table in load_case.tables.values():
        for bad in table.bad if table else []:
            if bad.key and bad.key in rejected:
                continue  # the case's own entry already names this line
            out.quarantined.append(
                Quarantined(bad.key, bad.path, f"line {bad.line}: {bad.reason}")
            )
            log.warning("Set aside %s line %d: %s", bad.path, bad.line, bad.reason)


def _check_size(path: Path) -> None:
    """Refuse a NIfTI whose header declares more than the memory cap, before
    MONAI decodes it."""
    import nibabel as nib

    check_nifti(nib.load(path), str(path))


def load_site(
    site_dir: str | Path,
    cfg: DataConfig,
    splits: tuple[str, ...] = ("train", "val", "test"),
    site_name: str | None = None,
    masks: bool = False,
    hu: bool = False,
) -> SiteData:
    """Load and preprocess every case of ``splits`` from ``site_dir``; with
    ``masks`` also each case's label map (``mask``, ``mask_present``).

    With ``ct-roi = 'liver'`` a CT is read together with its label map and cropped
    to the liver; a case whose CT has no usable label map is quarantined.

    ``hu=True`` leaves CT in Hounsfield units (not windowed) for a harmoniser; run
    config ``harmonise`` set to one that maps HU requires it, and is loaded through
    ``oncofed.common.ml.harmonise.load_harmonised``, which windows afterwards."""
    if cfg.harmonise in HU_HARMONISERS and not hu:
        raise ConfigError(
            f"harmonise = '{cfg.harmonise}': load sites with "
            "oncofed.common.ml.harmonise.load_harmonised, which maps HU before the "
            "window"
        )
    site_dir = Path(site_dir)
    name = site_name or site_dir.name
    manifest = read_manifest(site_dir)
    load_case = _CaseLoader(site_dir, name, cfg, masks, hu)
    out = SiteData(name=name, splits={s: [] for s in splits}, schema=load_case.schema)
    for line in manifest.bad:  # damaged or repeated manifest lines
        out.quarantined.append(
            Quarantined(line.key, line.path, f"line {line.line}: {line.reason}")
        )
        log.warning("Quarantined %s line %d: %s", line.path, line.line, line.reason)
    for row in manifest.rows:
        case_id, split = row[CASE_ID], row["split"]
        if split not in splits:
            if split not in ("train", "val", "test"):
                out.quarantined.append(
                    Quarantined(
                        case_id, str(site_dir / MANIFEST),
                        f"line {manifest.line_of[case_id]}: split {split!r} is not "
                        "train, val or test",
                    )
                )  # fmt: skip
            continue
        try:
            out.splits[split].append(load_case(row))
        except _Rejected as bad:
            out.quarantined.append(Quarantined(case_id, bad.path, bad.reason))
            log.warning("Quarantined case %s (%s): %s", case_id, bad.path, bad.reason)
    _account_table_lines(load_case, out)
    if cfg.imputation == "mice" and mice_fill(out.splits, cfg.seed, out.schema):
        log.info(
            "Site %s: clinical gaps filled by MICE fitted on its train split", name
        )
    if out.quarantined:
        log.warning(
            "Site %s: %d case(s) quarantined, %d loaded",
            name,
            len(out.quarantined),
            sum(len(v) for v in out.splits.values()),
        )
    return out


def _culprit(err: Exception, paths: dict[str, str]) -> str:
    """Which of a CT and its label map a joint-loading error is about: the file a
    reader names, the label map for grid and crop errors (its checks run last)."""
    text = "".join(str(e) for e in _chain(err))
    for path in paths.values():
        if path in text:
            return path
    about_mask = "label map" in text or f"'{MASK}'" in text
    return paths[MASK] if about_mask else paths[CT]


def _chain(err: BaseException) -> list[BaseException]:
    out = [err]
    while out[-1].__cause__ is not None:
        out.append(out[-1].__cause__)  # type: ignore[arg-type]
    return out


def _reason(err: Exception) -> str:
    """The innermost message: MONAI wraps reader errors in transform errors."""
    err = _chain(err)[-1]  # type: ignore[assignment]
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{type(err).__name__}: {text}"


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def label_subset(samples: list[dict], fraction: float, seed: int) -> list[dict]:
    """A seeded, class-stratified ``fraction`` of ``samples`` (run-config
    ``label-fraction``): of each class, ``ceil(fraction * n)`` cases, at least one.
    The rest are treated as unlabelled, i.e. not trained on."""
    if fraction >= 1.0:
        return list(samples)
    import math
    import random

    rng = random.Random(seed)
    keep: list[dict] = []
    for value in sorted({float(s[LABEL]) for s in samples}):
        members = [s for s in samples if float(s[LABEL]) == value]
        rng.shuffle(members)
        keep += members[: max(1, math.ceil(fraction * len(members)))]
    order = {id(s): i for i, s in enumerate(samples)}
    return sorted(keep, key=lambda s: order[id(s)])
