"""``lits17``: Liver Tumor Segmentation Challenge 2017 (CT + liver/tumour masks).

Source layout as distributed: ``volume-N.nii[.gz]`` with ``segmentation-N.nii[.gz]``
(labels 0 background, 1 liver, 2 tumour), in any sub-folders (the training batches
``Training Batch 1/2``); test volumes without a segmentation are kept as unlabelled
only if ``--label-column`` is given, else quarantined with that reason.

Sites: LiTS pooled 7 institutions but does not publish which volume came from which,
so the site is a documented proxy: the voxel-spacing group (slice thickness <= 1.5,
<= 3 or > 3 mm x pixel size < or >= 0.7 mm), which tracks scanner and protocol.
Label: tumour present in the segmentation (any voxel = 2).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from oncofed.common.ingest import DATASETS
from oncofed.common.ingest.imaging import build_cases, read_nifti_pairs, require_found
from oncofed.common.ingest.prepare import (
    PreparableDataset,
    PrepareOptions,
    ReadResult,
    Staging,
    pool_small_sites,
)
from oncofed.common.quarantine import Quarantined

NAME = "lits17"
_VOLUME = re.compile(r"^volume-(\d+)\.nii(\.gz)?$", re.I)
_SEG = re.compile(r"^segmentation-(\d+)\.nii(\.gz)?$", re.I)


class Lits17(PreparableDataset):
    name = NAME

    def read(
        self,
        root: Path,
        staging: Staging,
        opts: PrepareOptions,
        progress: Callable[[str], None],
    ) -> ReadResult:
        files = sorted(p for p in root.rglob("*") if p.is_file())
        volumes = {m.group(1): p for p in files if (m := _VOLUME.match(p.name))}
        segs = {m.group(1): p for p in files if (m := _SEG.match(p.name))}
        require_found(
            root,
            len(volumes),
            "LiTS volume-N.nii files",
            "point --root at the folder holding volume-N.nii / segmentation-N.nii",
        )
        quarantined = [
            Quarantined("", str(p), "segmentation without its volume-N file", "file")
            for n, p in sorted(segs.items())
            if n not in volumes
        ]
        pairs = [(f"lits-{n}", v, segs.get(n)) for n, v in sorted(volumes.items())]
        images, q = read_nifti_pairs(pairs, staging, {0, 1, 2}, progress)
        cases, q2 = build_cases(images, {}, opts, None)
        notes = [n for n in [pool_small_sites(cases, opts.min_site_cases)] if n]
        return ReadResult(
            cases=cases,
            quarantined=quarantined + q + q2,
            sources=[{"file": str(v), "role": "volume"} for v in volumes.values()],
            unrecognised=[
                str(p)
                for p in files
                if not (_VOLUME.match(p.name) or _SEG.match(p.name))
            ],
            notes=notes
            + [
                "sites are voxel-spacing groups (LiTS does not publish "
                "each volume's institution)"
            ],
        )


@DATASETS.register(NAME)
def _create() -> Lits17:
    return Lits17()
