"""A synthetic TCGA download, written in the real GDC formats, for offline runs.

What it writes into a folder, exactly as the GDC portal would:

* ``clinical.tsv``: the newer dotted schema (``cases.submitter_id``,
  ``demographic.vital_status``, ``diagnoses.ajcc_pathologic_stage``, ...), several
  rows per patient (one per treatment), ``'--`` for missing values, plus the
  identifying columns a real export has (``cases.case_id`` UUIDs,
  ``demographic.year_of_birth``) so that de-identification is exercised too.
* ``expression_counts.tsv``: genes x samples (counts), tumour samples ``-01A`` and
  a few normal ``-11A`` samples, keyed by sample barcode.

Patients belong to ``num_sites`` tissue-source sites (TSS codes) with different
sizes, stage mixes and a per-site expression batch effect. The binary label of the
``tcga_lihc`` reader (AJCC stage III-IV) is carried by a program of genes and,
weakly, by age; survival shortens with stage. The same spec always writes the same
bytes, and the folder is then read by the real ``tcga_lihc`` / ``tcga_coad_read``
readers: synthetic is one more source behind the same reader API.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd

TCGA_EXPORT_VERSION = 1
TSS_CODES = ("DD", "BC", "ED", "CC", "G3", "ZP", "RC", "UB", "2Y", "5R")
N_GENES = 400
N_SIGNAL_GENES = 20
SIGNAL_LOG2 = 0.35  # log2 shift of the stage programme (calibrates genomics AUC)
STAGES = ("Stage I", "Stage II", "Stage IIIA", "Stage IIIB", "Stage IV")


def write_tcga_export(
    out: Path,
    project: str = "TCGA-LIHC",
    num_sites: int = 7,
    patients_per_site: int = 60,
    seed: int = 2024,
) -> Path:
    """Write the export into ``out`` (created) and return it."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 31337])
    sizes = np.maximum(
        15, (patients_per_site * rng.uniform(0.5, 1.6, num_sites)).astype(int)
    )
    genes = [f"ENSG{900000 + i:011d}.{1 + i % 9}" for i in range(N_GENES)]
    signal = rng.choice(N_GENES, N_SIGNAL_GENES, replace=False)
    direction = rng.choice([-1.0, 1.0], N_SIGNAL_GENES)
    base = rng.uniform(2.0, 9.0, N_GENES)  # log2 mean expression per gene
    rows, samples = [], {}
    for s in range(num_sites):
        tss = TSS_CODES[s % len(TSS_CODES)]
        advanced_rate = rng.uniform(0.2, 0.6)
        batch = rng.normal(0, 0.4, N_GENES)  # the site's expression batch effect
        for k in range(sizes[s]):
            barcode = f"TCGA-{tss}-A{s:01d}{k:02d}"
            advanced = rng.random() < advanced_rate
            stage = STAGES[rng.integers(2, 5) if advanced else rng.integers(0, 2)]
            age = int(np.clip(rng.normal(63 if advanced else 59, 11), 20, 90))
            hazard = 1 / 1500 * (2.5 if advanced else 1.0)
            t_event, t_cens = rng.exponential(1 / hazard), rng.uniform(100, 3000)
            dead = t_event < t_cens
            t = "T3" if advanced and rng.random() < 0.7 else f"T{rng.integers(1, 3)}"
            m = "M1" if stage == "Stage IV" else ("MX" if rng.random() < 0.2 else "M0")
            n = "N1" if advanced and rng.random() < 0.4 else "N0"
            case_uuid = str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | k))
            for _ in range(int(rng.integers(1, 4))):  # one row per treatment
                rows.append(
                    {
                        "project.project_id": project,
                        "cases.case_id": case_uuid,
                        "cases.submitter_id": barcode,
                        "demographic.age_at_index": age
                        if rng.random() > 0.03
                        else "'--",
                        "demographic.gender": "male"
                        if rng.random() < 0.68
                        else "female",
                        "demographic.year_of_birth": 2010 - age,
                        "demographic.vital_status": "Dead" if dead else "Alive",
                        "demographic.days_to_death": int(t_event) if dead else "'--",
                        "diagnoses.days_to_last_follow_up": int(min(t_event, t_cens)),
                        "diagnoses.ajcc_pathologic_stage": stage
                        if rng.random() > 0.05
                        else "'--",
                        "diagnoses.ajcc_pathologic_t": t,
                        "diagnoses.ajcc_pathologic_n": n,
                        "diagnoses.ajcc_pathologic_m": m,
                        "diagnoses.primary_diagnosis": "Hepatocellular carcinoma, NOS",
                        "treatments.treatment_type": rng.choice(
                            ["Surgery", "Chemotherapy", "Radiation"]
                        ),
                    }
                )
            if rng.random() < 0.9:  # some patients have no expression profile
                expr = base + batch + rng.normal(0, 0.6, N_GENES)
                expr[signal] += direction * (SIGNAL_LOG2 if advanced else 0.0)
                expr[signal] += rng.normal(0, 0.5, N_SIGNAL_GENES)
                samples[f"{barcode}-01A-11R-A00Z-07"] = rng.poisson(2.0**expr)
                if rng.random() < 0.05:
                    samples[f"{barcode}-11A-11R-A00Z-07"] = rng.poisson(2.0**base)
    pd.DataFrame(rows).to_csv(out / "clinical.tsv", sep="\t", index=False)
    matrix = pd.DataFrame(samples, index=genes)
    matrix.index.name = "gene_id"
    matrix.to_csv(out / "expression_counts.tsv", sep="\t")
    (out / "README.txt").write_text(
        f"Synthetic {project} export written by OncoFed (version "
        f"{TCGA_EXPORT_VERSION}, seed {seed}); not real patients.\n"
    )
    return out
