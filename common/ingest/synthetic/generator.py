"""Deterministic synthetic virtual hospitals, written in the real on-disk formats.

Each site folder holds ``ct/case-XXXX.nii.gz`` (CT in Hounsfield units),
``labels/case-XXXX.nii.gz`` (LiTS label map: 0 background, 1 liver, 2 tumour),
``clinical.tsv`` (one row per patient, empty cell = missing) and ``manifest.csv``.

How the data is built (the calibration is in docs/synthetic-data.md):

* A case is HCC-positive (``label`` 1) with the site's prevalence.
* Image signal: positives carry 1-3 hypodense lesions inside the liver. Lesion radius
  is log-normal, so part of the tumours are small and near invisible under the
  site's noise; cirrhotic livers are nodular, which hides small lesions further.
* Clinical signal: AFP is raised in about half of the positives; age, sex, hepatitis
  B/C and cirrhosis shift the risk; liver-function labs follow cirrhosis. Given the
  label, image and clinical findings are drawn independently, so each modality
  misses different positives and fusion can beat either one alone.
* Sites differ as hospitals do: scanner HU offset and gain, noise, slice thickness
  and pixel spacing, prevalence, size, lab missingness, and cases lacking CT or
  clinical data.
* Referral pathways differ too: at each site the positives arrive through a local
  pathway that shifts two labs (e.g. a hepatology clinic sends patients with higher
  transaminases; another site's positives come from a transplant list with lower
  platelets). The shifts differ in lab and sign between sites, so a model trained at
  one site learns associations that do not hold at the others.

Two control scenarios (``SyntheticSpec.scenario``) remove, one at a time, what the
default was built to contain, so that an experiment can be seen to say "no":

* ``shared-signal``: image and clinical data carry the same signal. One hidden
  finding per positive decides both whether its tumours show on CT and whether its
  AFP is raised; the other clinical columns do not depend on the label, and there are
  no referral pathways. Fusion has nothing to add to the better single modality.
* ``iid-sites``: every site is the same hospital: one scanner, prevalence, size,
  missingness, and no referral pathways. Nothing a site learns alone is misleading
  elsewhere; a federation can only win by having more cases.

A harder scenario, ``scanner-shift``, keeps the patients of the default and makes
the scanners differ as reconstruction kernels, noise texture, calibration and MR
do (:data:`SCANNERS`): sharp and smooth kernels, white and coarse-grained noise,
HU offsets to +-150 and gains 0.6-1.5, slices of 1-7.5 mm, and one site whose
images have MRI-like contrast (tissue intensities remapped, lesions bright). Every
site also holds the same unlabelled **public reference cohort** (``reference/``:
scans from one reference scanner, as each hospital of a real consortium would
download a public dataset such as LiTS itself), and the server's validation and
test sets are labelled cases from that reference scanner.

Everything derives from ``np.random.default_rng`` seeded by (seed, site), so the same
spec always writes the same files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from oncofed.common.keys import CASE_ID, LABEL

GENERATOR_VERSION = 3  # bump when the content for a given spec changes
SCENARIOS = ("default", "shared-signal", "iid-sites", "scanner-shift")
OCCULT_FRACTION = 0.35  # positives whose tumours CT cannot show (caps image AUC)
AFP_RAISED_FRACTION = 0.4  # positives with a raised AFP (caps clinical AUC)
REFERRAL_SHIFT_SD = 1.0  # size of a site's referral-pathway lab shift, in lab SDs

# labs a referral pathway can shift: (spread on the scale the lab is drawn on, log?)
REFERRAL_LABS = {
    "alt_u_l": (0.4, True),
    "ast_u_l": (0.4, True),
    "albumin_g_dl": (0.45, False),
    "bilirubin_mg_dl": (0.45, True),
    "platelets_10e9_l": (50.0, False),
    "inr": (0.12, False),
}

CLINICAL_COLUMNS = (
    "age",
    "sex",
    "afp_ng_ml",
    "alt_u_l",
    "ast_u_l",
    "albumin_g_dl",
    "bilirubin_mg_dl",
    "platelets_10e9_l",
    "inr",
    "hbv",
    "hcv",
    "cirrhosis",
)


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Same spec, same bytes.

    Parameters
    ----------
    num_sites : virtual hospitals (default 7, as LiTS had 7 institutions).
    seed : master seed.
    cases_per_site : base case count; sites get 0.5x-1.6x of it.
    test_cases_per_site : cases per site profile in the server's held-out test set
        and, drawn separately, in its validation set.
    in_plane : voxels per side of an axial slice.
    z_extent_mm : cranio-caudal field of view; slices = z_extent_mm / thickness.
    scenario : ``default``, or a control that removes one built-in effect
        (``shared-signal``, ``iid-sites``; see the module docstring).
    """

    num_sites: int = 7
    seed: int = 2024
    cases_per_site: int = 60
    test_cases_per_site: int = 20
    in_plane: int = 64
    z_extent_mm: float = 60.0
    histology: bool = False  # also H&E bags per case (synthetic_multimodal)
    scenario: str = "default"
    version: int = GENERATOR_VERSION

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(
                f"scenario {self.scenario!r}: expected one of {', '.join(SCENARIOS)}"
            )

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


@dataclass(frozen=True)
class SiteProfile:
    """How one virtual hospital's scanner, population and records differ."""

    index: int
    n_cases: int
    prevalence: float
    hu_offset: float  # added to every voxel (calibration drift), HU
    hu_gain: float  # multiplies the tissue contrast
    noise_sd: float  # Gaussian noise, HU
    slice_mm: float
    pixel_mm: float
    lab_missing: float  # probability that a lab value is missing
    ct_missing: float  # probability that a case has no CT
    clinical_missing: float  # probability that a case has no clinical record
    referral: tuple[tuple[str, float], ...] = ()  # (lab, shift in SDs) for positives
    shared_signal: bool = False  # CT visibility and AFP follow one hidden finding
    # scanner-shift scenario: reconstruction kernel (> 0: Gaussian smoothing sigma
    # in voxels; < 0: unsharp-mask sharpening of that strength), the noise's
    # grain (sigma in voxels of its spatial correlation; 0 = white) and MRI-like
    # contrast (tissue intensities remapped by MRI_LIKE)
    kernel: float = 0.0
    noise_grain: float = 0.0
    mri_like: bool = False

    @property
    def name(self) -> str:
        return f"site-{self.index:02d}"


def site_profiles(spec: SyntheticSpec) -> list[SiteProfile]:
    """Per-site differences, drawn once from the master seed."""
    rng = np.random.default_rng([spec.seed, 7919])
    sizes = rng.uniform(0.5, 1.6, spec.num_sites)
    referrals = _referral_pathways(spec)
    profiles = []
    for i in range(spec.num_sites):
        profiles.append(
            SiteProfile(
                index=i,
                n_cases=max(12, int(round(spec.cases_per_site * sizes[i]))),
                prevalence=float(rng.uniform(0.25, 0.7)),
                hu_offset=float(rng.uniform(-40, 40)),
                hu_gain=float(rng.uniform(0.8, 1.2)),
                noise_sd=float(rng.uniform(10, 30)),
                slice_mm=float(rng.choice([2.5, 3.0, 5.0])),
                pixel_mm=float(rng.uniform(0.6, 0.9)) * 512 / spec.in_plane,
                lab_missing=float(rng.uniform(0.0, 0.25)),
                ct_missing=0.15 if i % 3 == 2 else 0.0,
                clinical_missing=0.2 if i % 3 == 1 else 0.0,
                referral=referrals[i],
            )
        )
    if spec.scenario == "iid-sites":  # every site is site 0, minus its pathway
        same = profiles[0]
        profiles = [
            replace(
                same,
                index=i,
                n_cases=spec.cases_per_site,
                ct_missing=0.0,
                clinical_missing=0.0,
                referral=(),
            )
            for i in range(spec.num_sites)
        ]
    elif spec.scenario == "shared-signal":
        profiles = [replace(p, referral=(), shared_signal=True) for p in profiles]
    elif spec.scenario == "scanner-shift":
        profiles = [
            replace(p, **SCANNERS[i % len(SCANNERS)], ct_missing=0.0)
            for i, p in enumerate(profiles)
        ]
    return profiles


# scanner-shift: one scanner per site (cycled when there are more sites), and the
# reference scanner of the public cohort and of the server's validation/test sets
SCANNERS: tuple[dict[str, Any], ...] = (
    {"hu_offset": 10.0, "hu_gain": 1.0, "noise_sd": 14.0, "kernel": 0.6,
     "noise_grain": 0.0, "slice_mm": 2.5},  # close to the reference
    {"hu_offset": 120.0, "hu_gain": 1.35, "noise_sd": 38.0, "kernel": -1.5,
     "noise_grain": 0.0, "slice_mm": 1.0},  # sharp kernel, thin slices, fine noise
    {"hu_offset": -150.0, "hu_gain": 0.65, "noise_sd": 22.0, "kernel": 1.6,
     "noise_grain": 1.5, "slice_mm": 5.0},  # smooth kernel, coarse noise texture
    {"hu_offset": 0.0, "hu_gain": 1.0, "noise_sd": 20.0, "kernel": 0.8,
     "noise_grain": 0.8, "slice_mm": 3.0, "mri_like": True},  # MRI-like contrast
    {"hu_offset": 70.0, "hu_gain": 1.5, "noise_sd": 45.0, "kernel": 0.0,
     "noise_grain": 1.0, "slice_mm": 7.5},  # thick slices, high gain, coarse noise
    {"hu_offset": -90.0, "hu_gain": 0.75, "noise_sd": 30.0, "kernel": -1.0,
     "noise_grain": 0.0, "slice_mm": 2.0},
    {"hu_offset": 40.0, "hu_gain": 1.2, "noise_sd": 12.0, "kernel": 2.0,
     "noise_grain": 2.0, "slice_mm": 5.0},
)  # fmt: skip
REFERENCE_SCANNER: dict[str, Any] = {"hu_offset": 0.0, "hu_gain": 1.0, "noise_sd": 12.0,
                     "kernel": 0.5, "noise_grain": 0.0, "slice_mm": 2.5}  # fmt: skip
# MRI-like contrast: CT intensity (HU) -> signal, piecewise linear: fat and
# fluid-like lesions bright, liver mid-grey, bone dark (roughly T2-weighted)
MRI_LIKE = (
    (-1000.0, -100.0, -10.0, 35.0, 62.0, 200.0, 450.0),
    (-1000.0, 320.0, 260.0, 110.0, 60.0, -150.0, -250.0),
)


def reference_profile(spec: SyntheticSpec, index: int = 99) -> SiteProfile:
    """The reference scanner (scanner-shift): the public cohort's and the
    server's validation and test sets'."""
    return SiteProfile(
        index=index,
        n_cases=spec.test_cases_per_site,
        prevalence=0.5,
        pixel_mm=0.75 * 512 / spec.in_plane,
        lab_missing=0.05,
        ct_missing=0.0,
        clinical_missing=0.0,
        **REFERENCE_SCANNER,
    )


def _referral_pathways(spec: SyntheticSpec) -> list[tuple[tuple[str, float], ...]]:
    """Two (lab, signed shift) pairs per site. Each lab's sign alternates from one
    site that uses it to the next, so pooled over the consortium the shifts cancel
    and only a single-site model is misled by them."""
    rng = np.random.default_rng([spec.seed, 104729])
    labs = list(REFERRAL_LABS)
    uses = dict.fromkeys(labs, 0)
    out = []
    for _ in range(spec.num_sites):
        pairs = []
        for k in rng.choice(len(labs), size=2, replace=False):
            lab = labs[int(k)]
            pairs.append((lab, REFERRAL_SHIFT_SD * (-1.0 if uses[lab] % 2 else 1.0)))
            uses[lab] += 1
        out.append(tuple(pairs))
    return out


# ---------------------------------------------------------------- clinical


def clinical_record(
    label: int,
    rng: np.random.Generator,
    referral: tuple[tuple[str, float], ...] = (),
    shared_finding: bool | None = None,
) -> tuple[dict, bool]:
    """One patient's clinical row (no missingness yet) and whether cirrhotic.

    ``referral``: the site's pathway shifts, applied to positives only.
    ``shared_finding`` (shared-signal scenario): AFP is raised exactly when it is
    True, and no other column depends on the label.
    """
    pos = label == 1
    risk = pos and shared_finding is None  # risk factors follow the label
    cirrhosis = rng.random() < (0.65 if risk else 0.35)
    hbv = rng.random() < (0.3 if risk else 0.15)
    hcv = rng.random() < (0.25 if risk else 0.12)
    afp_raised = pos and rng.random() < AFP_RAISED_FRACTION
    if shared_finding is not None:
        afp_raised = shared_finding
    log_afp = rng.normal(2.3, 0.7) if afp_raised else rng.normal(0.75, 0.4)
    log_afp += 0.25 * (hbv or hcv)  # hepatitis raises AFP a little in anyone
    hep = 1.0 + 0.8 * (hbv or hcv) + 0.6 * cirrhosis
    row = {
        "age": float(np.clip(rng.normal(62 if risk else 57, 10), 20, 90).round()),
        "sex": "M" if rng.random() < (0.72 if risk else 0.58) else "F",
        "afp_ng_ml": float(round(10**log_afp, 1)),
        "alt_u_l": float(round(rng.lognormal(np.log(25 * hep), 0.4), 0)),
        "ast_u_l": float(
            round(rng.lognormal(np.log(24 * hep * (1 + 0.3 * risk)), 0.4))
        ),
        "albumin_g_dl": float(round(rng.normal(3.4 if cirrhosis else 4.1, 0.45), 1)),
        "bilirubin_mg_dl": float(
            round(rng.lognormal(np.log(1.5 if cirrhosis else 0.7), 0.45), 2)
        ),
        "platelets_10e9_l": float(
            round(np.clip(rng.normal(120 if cirrhosis else 240, 50), 20, 500))
        ),
        "inr": float(round(rng.normal(1.3 if cirrhosis else 1.05, 0.12), 2)),
        "hbv": int(hbv),
        "hcv": int(hcv),
        "cirrhosis": int(cirrhosis),
    }
    if pos:
        for lab, shift in referral:
            spread, on_log = REFERRAL_LABS[lab]
            value = float(row[lab])
            value = value * np.exp(shift * spread) if on_log else value + shift * spread
            row[lab] = float(round(max(value, 0.01), 2))
    return row, cirrhosis


# ---------------------------------------------------------------- CT


def ct_volume(
    label: int,
    cirrhotic: bool,
    profile: SiteProfile,
    spec: SyntheticSpec,
    rng: np.random.Generator,
    visible: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An abdominal CT block in HU and its LiTS label map, both (X, Y, Z).

    ``visible`` (shared-signal scenario) decides whether a positive's tumours show;
    otherwise a share ``OCCULT_FRACTION`` of positives are occult at random."""
    n = spec.in_plane
    nz = max(4, int(round(spec.z_extent_mm / profile.slice_mm)))
    # physical coordinates in a unit box, so anatomy is the same whatever the spacing
    x, y, z = np.meshgrid(
        np.linspace(-1, 1, n),
        np.linspace(-1, 1, n),
        np.linspace(-1, 1, nz),
        indexing="ij",
    )
    vol = np.full((n, n, nz), -1000.0)
    body = (x / 0.92) ** 2 + (y / 0.75) ** 2 <= 1
    vol[body] = -90.0  # subcutaneous fat
    inner = (x / 0.84) ** 2 + (y / 0.67) ** 2 <= 1
    vol[inner] = 35.0  # muscle / soft tissue
    spine = (x**2 + (y - 0.5) ** 2) <= 0.12**2
    vol[spine] = 450.0
    # liver: an ellipsoid on the patient's right, size and position jittered
    cx, cy = rng.normal(-0.35, 0.05), rng.normal(-0.05, 0.05)
    ax, ay, az = rng.normal(0.38, 0.03), rng.normal(0.42, 0.03), rng.normal(1.1, 0.08)
    liver = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + (z / az) ** 2 <= 1
    liver_hu = rng.normal(62, 5)
    vol[liver] = liver_hu
    if cirrhotic:  # regenerative nodules: blotchy, lower-contrast parenchyma
        blobs = _smooth_noise(rng, vol.shape, sigma=2.0) * 14
        vol[liver] += blobs[liver]
    seg = np.zeros(vol.shape, dtype=np.uint8)
    seg[liver] = 1
    if label == 1:
        inside = np.argwhere(liver)
        occult = rng.random() < OCCULT_FRACTION
        if visible is not None:
            occult = not visible
        for _ in range(int(rng.integers(1, 4))):
            centre = inside[rng.integers(len(inside))]
            if occult:  # small, near-isodense: invisible at this resolution
                radius_mm = float(rng.uniform(3.0, 5.0))
                contrast = rng.uniform(-20, -10)
            else:
                radius_mm = float(np.clip(rng.lognormal(np.log(22.0), 0.35), 10, 45))
                contrast = rng.uniform(-90, -50)  # hypodense, portal-venous phase
            d2 = (
                ((np.arange(n)[:, None, None] - centre[0]) * profile.pixel_mm) ** 2
                + ((np.arange(n)[None, :, None] - centre[1]) * profile.pixel_mm) ** 2
                + ((np.arange(nz)[None, None, :] - centre[2]) * profile.slice_mm) ** 2
            )
            lesion = (d2 <= radius_mm**2) & liver
            vol[lesion] = liver_hu + contrast
            seg[lesion] = 2
    return scanner(vol, profile, rng), seg


def scanner(vol: np.ndarray, profile: SiteProfile, rng: np.random.Generator):
    """What the site's scanner makes of the anatomy ``vol`` (HU): MRI-like
    remapping, reconstruction kernel, gain around water, offset, noise (white or
    grained), clipped to the int16 CT range."""
    from scipy.ndimage import gaussian_filter

    if profile.mri_like:
        vol = np.interp(vol, *MRI_LIKE)
    if profile.kernel > 0:  # smooth kernel
        vol = gaussian_filter(vol, profile.kernel)
    elif profile.kernel < 0:  # sharp kernel: unsharp mask
        vol = vol + (-profile.kernel) * (vol - gaussian_filter(vol, 1.0))
    vol = (vol * profile.hu_gain) + profile.hu_offset
    if profile.noise_grain > 0:
        vol = (
            vol + _smooth_noise(rng, vol.shape, profile.noise_grain) * profile.noise_sd
        )
    else:
        vol = vol + rng.normal(0, profile.noise_sd, vol.shape)
    return np.clip(vol, -1024, 3071).astype(np.int16)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float):
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.normal(0, 1, shape), sigma)
    return field / (field.std() + 1e-8)


def affine(profile: SiteProfile) -> np.ndarray:
    """Voxel-to-world (RAS) matrix with the site's spacing."""
    return np.diag([profile.pixel_mm, profile.pixel_mm, profile.slice_mm, 1.0])


# ---------------------------------------------------------------- writers


def write_cases(
    out_dir,
    profile: SiteProfile,
    spec: SyntheticSpec,
    n_cases: int,
    rng: np.random.Generator,
    split_fractions: tuple[float, float] | str,
    id_prefix: str,
) -> pd.DataFrame:
    """Write ``n_cases`` cases of ``profile`` under ``out_dir``; return the manifest.

    ``split_fractions`` = (test, validation) shares of a site's cases, drawn per
    label; a split name instead (``"val"``, ``"test"``) writes every case into that
    split (the server's validation and test sets).
    """
    (out_dir / "ct").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(exist_ok=True)
    rows, clinical_rows = [], []
    labels = (rng.random(n_cases) < profile.prevalence).astype(int)
    # at least two of each class per site, so every site can report an AUC
    labels[:2], labels[2:4] = 1, 0
    rng.shuffle(labels)
    if isinstance(split_fractions, str):
        splits = np.array([split_fractions] * n_cases, dtype=object)
    else:  # stratified: every split sees both classes
        splits = np.array(["train"] * n_cases, dtype=object)
        test_share, val_share = split_fractions
        for cls in (0, 1):
            idx = rng.permutation(np.flatnonzero(labels == cls))
            n_test = max(1, int(round(len(idx) * test_share)))
            n_val = max(1, int(round(len(idx) * val_share)))
            splits[idx[:n_test]] = "test"
            splits[idx[n_test : n_test + n_val]] = "val"
    for i, label in enumerate(labels):
        case_id = f"{id_prefix}{i:04d}"
        finding = None  # shared-signal: one hidden finding shows in CT and AFP
        if profile.shared_signal:
            finding = bool(label) and rng.random() >= OCCULT_FRACTION
        clin, cirrhotic = clinical_record(int(label), rng, profile.referral, finding)
        has_ct = rng.random() >= profile.ct_missing
        has_clin = rng.random() >= profile.clinical_missing
        if not (has_ct or has_clin):
            has_ct = True
        ct_rel = mask_rel = ""
        vol, seg = ct_volume(int(label), cirrhotic, profile, spec, rng, finding)
        if has_ct:
            ct_rel, mask_rel = f"ct/{case_id}.nii.gz", f"labels/{case_id}.nii.gz"
            aff = affine(profile)
            img = nib.Nifti1Image(vol, aff)
            img.header.set_xyzt_units("mm")
            nib.save(img, out_dir / ct_rel)
            nib.save(nib.Nifti1Image(seg, aff), out_dir / mask_rel)
        if has_clin:
            for col in CLINICAL_COLUMNS[2:9]:  # labs go missing, demographics do not
                if rng.random() < profile.lab_missing:
                    clin[col] = np.nan
            clinical_rows.append({CASE_ID: case_id, **clin})
        rows.append(
            {
                CASE_ID: case_id,
                "split": splits[i],
                LABEL: int(label),
                "ct_path": ct_rel,
                "mask_path": mask_rel,
                "has_clinical": int(has_clin),
            }
        )
    clinical = pd.DataFrame(clinical_rows, columns=[CASE_ID, *CLINICAL_COLUMNS])
    clinical.to_csv(out_dir / "clinical.tsv", sep="\t", index=False, na_rep="")
    manifest = pd.DataFrame(rows)
    manifest.to_csv(out_dir / "manifest.csv", index=False)
    return manifest
