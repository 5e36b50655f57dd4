"""Scanner harmonisation at a site: map its CT to the public reference cohort's
scanner before the task model sees it (run-config ``harmonise``).

One registry, :data:`HARMONISERS`, holds the method and its baselines:

``none``       the CT as the site's scanner made it.
``fedbn``      no mapping; the sites keep their own normalisation layers
               (``norm-layers = 'local'``, set by ``harmonise = 'fedbn'``).
``histogram``  each scan's liver-crop histogram matched to the reference cohort's
               pooled one (scikit-image's ``match_histograms``).
``zscore``     each scan z-scored within its liver, then put on the reference
               cohort's liver mean and spread.
``cyclegan``   the site's own CycleGAN (:mod:`oncofed.common.ml.cyclegan`)
               between its training scans and the reference cohort; its site ->
               reference generator maps every scan of the site. Nothing of it
               leaves the site.

Every method outputs Hounsfield units on the reference scanner's scale; the
task's HU window is applied after it. The server's validation and test sets are
reference-scanner cases (scanner-shift scenario): it applies the per-image
methods (``histogram``, ``zscore``) as the sites do and leaves ``cyclegan``'s
input as it is (it is already the reference domain).

**Guard rails** (:func:`guard_rails`), measured at the site on its own training
scans with their label maps (the generator's ground truth in the synthetic
scenario), each comparing the mapped scan with the original put on the
reference liver's scale by one affine map per scan (:func:`rescaled`, which can
neither make nor remove a lesion): the lesion-to-liver contrast-to-noise ratio
must keep at least ``KEEP_CONTRAST`` of its size, with lesions darker than the
liver as on the reference scanner; a fixed reference-domain liver segmenter
(an intensity band around the reference liver, largest component) must find the
liver about as well (Dice within ``LIVER_DICE_MARGIN``); and a frozen lesion
detector fitted on the reference cohort alone may not rise by more than
``DETECTOR_BOUND`` on lesion-free scans (a lesion created) nor fall by more on
scans with a visible lesion (one erased). A site whose mapping fails any of them
falls back to ``none`` and reports ``harmonise-fallback = 1``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oncofed.common.config import HU_HARMONISERS, DataConfig
from oncofed.common.data.harmonise import load_reference
from oncofed.common.data.site import SiteData, load_site
from oncofed.common.data.transforms import window_hu
from oncofed.common.keys import CT, MASK, present_key
from oncofed.common.registry import Registry

log = logging.getLogger(__name__)

KEEP_CONTRAST = 0.5  # harmonised lesion CNR >= this x the original's size
LIVER_DICE_MARGIN = 0.15  # fixed segmenter: Dice >= the reference's - this
DETECTOR_BOUND = 0.15  # detector's mean score within this of the reference's
LIVER, LESION = 1, 2
VISIBLE_LESION_SHARE = 0.01  # of the liver's voxels: less is an occult lesion

Volume = torch.Tensor  # (1, S, S, D) HU
Mapping = Callable[[Volume, Volume], Volume]  # (ct HU, label map) -> ct HU


# -- reference-domain yardsticks --------------------------------------------------
@dataclass
class Yardstick:
    """The reference cohort's liver intensity (the fixed segmenter's band) and a
    lesion detector fitted on the cohort alone, frozen."""

    liver_mean: float
    liver_sd: float
    detector: Any  # sklearn: scaler + logistic regression on lesion_features
    # a seeded sample of the cohort's HU per tissue (liver, lesion): the domain gap
    tissue: dict[int, np.ndarray] = field(default_factory=dict)


def _liver_stats(ct: Volume, seg: Volume) -> tuple[float, float]:
    v = ct[seg == LIVER]
    return (float(v.mean()), float(v.std())) if v.numel() > 1 else (math.nan, math.nan)


def lesion_cnr(ct: Volume, seg: Volume) -> float:
    """(liver mean - lesion mean) / liver SD: > 0 when lesions are darker."""
    liver, lesion = ct[seg == LIVER], ct[seg == LESION]
    if liver.numel() < 2 or lesion.numel() == 0:
        return math.nan
    return float((liver.mean() - lesion.mean()) / (liver.std() + 1e-6))


def segment_liver(ct: Volume, mean: float, sd: float) -> np.ndarray:
    """The fixed segmenter: voxels within 2.5 SD of the reference liver's mean,
    largest connected component (scipy)."""
    from scipy import ndimage

    band = (np.abs(ct[0].numpy() - mean) <= 2.5 * sd).astype(np.uint8)
    labels, n = ndimage.label(band)
    if n == 0:
        return band.astype(bool)
    sizes = ndimage.sum(band, labels, range(1, n + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else math.nan


def lesion_features(ct: Volume, seg: Volume, mean: float, sd: float) -> np.ndarray:
    """Share of liver (and lesion) voxels darker than the reference liver by 2,
    3 and 4 SD: what the frozen detector reads."""
    inside = ct[seg >= LIVER]
    if inside.numel() == 0:
        return np.zeros(3)
    return np.array([float((inside < mean - k * sd).float().mean()) for k in (2, 3, 4)])


def visible_lesion(seg: Volume) -> bool:
    """The scan's lesions fill at least ``VISIBLE_LESION_SHARE`` of its liver (an
    occult lesion, a few voxels, is left out of the contrast and detector
    figures)."""
    return int((seg == LESION).sum()) >= VISIBLE_LESION_SHARE * int(
        (seg >= LIVER).sum()
    )


def _status(seg: Volume) -> int:
    """1: visible lesion; 0: lesion-free; -1: occult lesion only."""
    if visible_lesion(seg):
        return 1
    return -1 if (seg == LESION).any() else 0


def yardstick(reference: list[dict[str, torch.Tensor]]) -> Yardstick:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    stats = np.array([_liver_stats(r[CT], r[MASK]) for r in reference])
    mean, sd = float(np.nanmean(stats[:, 0])), float(np.nanmean(stats[:, 1]))
    x = np.stack([lesion_features(r[CT], r[MASK], mean, sd) for r in reference])
    y = np.array([_status(r[MASK]) for r in reference])
    known = y >= 0  # occult-only scans teach the detector nothing
    detector = None
    if len(set(y[known])) == 2:
        detector = make_pipeline(StandardScaler(), LogisticRegression(C=10.0))
        detector.fit(x[known], y[known])
    return Yardstick(
        liver_mean=mean, liver_sd=sd, detector=detector, tissue=_tissue_hu(reference)
    )


GAP_SAMPLE = 20000  # voxels per tissue kept for the HU-distribution distance


def _tissue_hu(scans: list[dict[str, torch.Tensor]]) -> dict[int, np.ndarray]:
    """A seeded sample of the scans' HU per tissue (liver, lesion)."""
    rng = np.random.default_rng(0)
    out = {}
    for tissue in (LIVER, LESION):
        parts = [s[CT][s[MASK] == tissue].numpy() for s in scans]
        v = np.concatenate(parts) if parts else np.zeros(0)
        if len(v) > GAP_SAMPLE:
            v = rng.choice(v, GAP_SAMPLE, replace=False)
        out[tissue] = v.astype(float)
    return out


def tissue_gap(
    scans: list[dict[str, torch.Tensor]], ref: Yardstick
) -> dict[str, float]:
    """Per tissue, the distance between the scans' HU distribution and the
    reference cohort's: the 1-Wasserstein distance in HU (scipy), NaN where a
    tissue is absent. The domain gap a harmoniser should shrink."""
    from scipy.stats import wasserstein_distance

    own = _tissue_hu(scans)
    return {
        name: (
            float(wasserstein_distance(own[t], ref.tissue[t]))
            if len(own[t]) and len(ref.tissue.get(t, ()))
            else math.nan
        )
        for name, t in (("liver", LIVER), ("lesion", LESION))
    }


def _scores(detector: Any, x: np.ndarray) -> np.ndarray:
    if detector is None:
        return np.full(len(x), math.nan)
    return np.asarray(detector.predict_proba(x)[:, 1])


def rescaled(ct: Volume, seg: Volume, ref: Yardstick) -> Volume:
    """``ct`` put on the reference liver's scale by one affine map per scan (its
    liver z-scored): it cannot make or remove a lesion, so it is the "before" a
    reference-domain yardstick reads a site's own scan through."""
    mean, sd = _liver_stats(ct, seg)
    if not sd > 0:
        return ct
    return (ct - mean) / sd * ref.liver_sd + ref.liver_mean


def _figures(scans: list[tuple[Volume, Volume]], ref: Yardstick) -> dict[str, Any]:
    """Lesion CNRs, fixed-segmenter liver Dice and detector scores of scans
    (ct, label map)."""
    cnr, dices, x, y = [], [], [], []
    for ct, seg in scans:
        if visible_lesion(seg):
            cnr.append(lesion_cnr(ct, seg))
        liver = (seg[0] >= LIVER).numpy()
        dices.append(dice(segment_liver(ct, ref.liver_mean, ref.liver_sd), liver))
        x.append(lesion_features(ct, seg, ref.liver_mean, ref.liver_sd))
        y.append(_status(seg))
    scores, status = _scores(ref.detector, np.stack(x)), np.array(y)
    return {
        "cnr": _mean(cnr),
        "dice": _mean(dices),
        "free": _mean(scores[status == 0]),
        "lesion": _mean(scores[status == 1]),
    }


def guard_rails(
    mapping: Mapping, scans: list[dict[str, torch.Tensor]], ref: Yardstick
) -> dict[str, float]:
    """The guard-rail figures of ``mapping`` on a site's scans with their label
    maps, before (the scan :func:`rescaled`) and after, and ``harmonise-ok`` (1
    when every check holds; a check with nothing to measure holds)."""
    pairs = [(s[CT], s[MASK]) for s in scans]
    mapped = [(mapping(ct, seg), seg) for ct, seg in pairs]  # once: a CycleGAN pass
    b = _figures([(rescaled(ct, seg, ref), seg) for ct, seg in pairs], ref)
    a = _figures(mapped, ref)
    m = {
        # the size of the original contrast (an MRI-like site's lesions are
        # brighter than its liver: negative before, positive once mapped)
        "harmonise-cnr-before": abs(b["cnr"]),
        "harmonise-cnr-after": a["cnr"],
        "harmonise-liver-dice-before": b["dice"],
        "harmonise-liver-dice-after": a["dice"],
        "harmonise-detector-free-before": b["free"],
        "harmonise-detector-free-after": a["free"],
        "harmonise-detector-lesion-before": b["lesion"],
        "harmonise-detector-lesion-after": a["lesion"],
    }
    shortfalls = [  # each must be <= 0; NaN (nothing to measure) passes
        KEEP_CONTRAST * m["harmonise-cnr-before"] - m["harmonise-cnr-after"],
        b["dice"] - LIVER_DICE_MARGIN - a["dice"],
        a["free"] - b["free"] - DETECTOR_BOUND,  # a lesion created
        b["lesion"] - a["lesion"] - DETECTOR_BOUND,  # a lesion erased
    ]
    m["harmonise-ok"] = float(not any(x > 0 for x in shortfalls))
    gap_b = tissue_gap([{CT: ct, MASK: seg} for ct, seg in pairs], ref)
    gap_a = tissue_gap([{CT: ct, MASK: seg} for ct, seg in mapped], ref)
    for tissue in ("liver", "lesion"):  # reported, not checked
        m[f"harmonise-gap-{tissue}-before"] = gap_b[tissue]
        m[f"harmonise-gap-{tissue}-after"] = gap_a[tissue]
    return m


def _mean(values: Any) -> float:
    a = np.asarray(values, dtype=float)
    return float(np.nanmean(a)) if a.size and not np.isnan(a).all() else math.nan


# -- the methods ------------------------------------------------------------------
@dataclass
class Fitted:
    """A site's mapping and what it reports (``harmonise-*`` metrics)."""

    mapping: Mapping | None  # None: the CT passes unchanged
    metrics: dict[str, float] = field(default_factory=dict)


class Harmoniser:
    """Fit at a site on its training scans and the reference cohort."""

    per_image = False  # the same mapping for any scan (applied at the server too)

    def fit(
        self,
        site: list[dict[str, torch.Tensor]],
        reference: list[dict[str, torch.Tensor]],
        cfg: DataConfig,
        device: torch.device,
    ) -> Fitted:
        return Fitted(None)


HARMONISERS: Registry[Harmoniser] = Registry("harmonise")


@HARMONISERS.register("none")
def _none() -> Harmoniser:
    return Harmoniser()


@HARMONISERS.register("fedbn")
def _fedbn() -> Harmoniser:
    return Harmoniser()  # the norm layers stay at the site (norm-layers = local)


class HistogramMatch(Harmoniser):
    per_image = True

    def fit(self, site, reference, cfg, device) -> Fitted:  # type: ignore[no-untyped-def]
        from skimage.exposure import match_histograms

        pooled = torch.cat([r[CT].flatten() for r in reference]).numpy()

        def mapping(ct: Volume, seg: Volume) -> Volume:
            out = match_histograms(ct.numpy().ravel(), pooled)
            return torch.from_numpy(out.reshape(ct.shape).astype(np.float32))

        return Fitted(mapping)


@HARMONISERS.register("histogram")
def _histogram() -> Harmoniser:
    return HistogramMatch()


class LiverZScore(Harmoniser):
    per_image = True

    def fit(self, site, reference, cfg, device) -> Fitted:  # type: ignore[no-untyped-def]
        ref = yardstick(reference)
        return Fitted(lambda ct, seg: rescaled(ct, seg, ref))


@HARMONISERS.register("zscore")
def _zscore() -> Harmoniser:
    return LiverZScore()


class CycleGanHarmoniser(Harmoniser):
    """``cyclegan``: the site trains its CycleGAN alone, ``harmonise-steps``
    updates."""

    def fit(self, site, reference, cfg, device) -> Fitted:  # type: ignore[no-untyped-def]
        from oncofed.common.ml.cyclegan import SiteCycleGan, to_reference

        site_gan = SiteCycleGan(
            [s[CT] for s in site],
            [r[CT] for r in reference],
            seed=cfg.seed,
            device=device,
        )
        site_gan.train(cfg.harmonise_steps)
        gan = site_gan.gan

        def mapping(ct: Volume, seg: Volume) -> Volume:
            return to_reference(gan, ct, device)

        return Fitted(
            mapping,
            {
                "harmonise-train-s": site_gan.seconds,
                "harmonise-cycle-loss": site_gan.last_cycle,
            },
        )


@HARMONISERS.register("cyclegan")
def _cyclegan() -> Harmoniser:
    return CycleGanHarmoniser()


def load_harmonised_sites(
    site_dirs: Sequence[str | Path],
    cfg: DataConfig,
    splits: tuple[str, ...] = ("train", "val", "test"),
) -> list[tuple[SiteData, float]]:
    """Every site of a pooled experiment through :func:`load_harmonised`, with
    each site's CPU seconds of loading and fitting."""
    out = []
    for site_dir in site_dirs:
        t = time.process_time()
        site = load_harmonised(site_dir, cfg, splits)
        out.append((site, time.process_time() - t))
    return out


# -- loading a site through its harmoniser -------------------------------------------
RAIL_KEYS = (
    "harmonise-cnr-before", "harmonise-cnr-after",
    "harmonise-liver-dice-before", "harmonise-liver-dice-after",
    "harmonise-detector-free-before", "harmonise-detector-free-after",
    "harmonise-detector-lesion-before", "harmonise-detector-lesion-after",
    "harmonise-gap-liver-before", "harmonise-gap-liver-after",
    "harmonise-gap-lesion-before", "harmonise-gap-lesion-after",
    "harmonise-ok", "harmonise-fallback",
)  # fmt: skip
METHOD_KEYS = {"cyclegan": ("harmonise-train-s", "harmonise-cycle-loss")}


def report_keys(method: str) -> tuple[str, ...]:
    """The ``harmonise-*`` metrics every site of a run with ``method`` reports
    (the same keys at every site, NaN where a figure does not exist)."""
    if method not in HU_HARMONISERS:
        return ()
    return RAIL_KEYS + METHOD_KEYS.get(method, ())


def fit_site(
    cfg: DataConfig,
    site: list[dict[str, torch.Tensor]],
    reference: list[dict[str, torch.Tensor]],
    device: torch.device,
) -> Fitted:
    """Fit ``cfg.harmonise`` on the site's scans; check the guard rails; fall
    back to no mapping when they fail."""
    fitted = HARMONISERS.create(cfg.harmonise).fit(site, reference, cfg, device)
    if fitted.mapping is None:
        return fitted
    rails = guard_rails(fitted.mapping, site, yardstick(reference))
    metrics = {**fitted.metrics, **rails, "harmonise-fallback": 0.0}
    if not rails["harmonise-ok"]:
        log.warning(
            "Harmonisation '%s' failed its guard rails at this site (%s): the site "
            "falls back to no harmonisation",
            cfg.harmonise,
            ", ".join(f"{k}={v:.3f}" for k, v in rails.items()),
        )
        return Fitted(None, {**metrics, "harmonise-fallback": 1.0})
    return Fitted(fitted.mapping, metrics)


def _apply(
    data: SiteData, mapping: Mapping | None, cfg: DataConfig, masks: bool
) -> None:
    for samples in data.splits.values():
        for s in samples:
            if s.get(present_key(CT)) and mapping is not None and MASK in s:
                s[CT] = mapping(s[CT], s[MASK])
            s[CT] = window_hu(s[CT], cfg) if s.get(present_key(CT)) else s[CT]
            if not masks:
                s.pop(MASK, None)
                s.pop(present_key(MASK), None)


def _own_scans(data: SiteData) -> list[dict[str, torch.Tensor]]:
    """The site's training scans (HU) with their label maps: what it fits on."""
    return [
        {CT: s[CT], MASK: s[MASK]}
        for s in data.splits.get("train", [])
        if s.get(present_key(CT)) and s.get(present_key(MASK))
    ]


def load_harmonised(
    site_dir: str | Path,
    cfg: DataConfig,
    splits: tuple[str, ...] = ("train", "val", "test"),
    site_name: str | None = None,
    masks: bool = False,
    reference_domain: bool = False,
    device: torch.device | None = None,
) -> SiteData:
    """:func:`~oncofed.common.data.site.load_site` through ``cfg.harmonise``.

    A site fits its harmoniser on its own training scans (and the reference
    cohort in its folder) and maps every split; ``reference_domain`` (the
    server's reference-scanner sets) applies only the per-image methods. The
    fitted site's ``harmonise-*`` figures are in ``SiteData.harmonise``. With a
    method that does not map HU this is ``load_site``."""
    if cfg.harmonise not in HU_HARMONISERS:
        return load_site(site_dir, cfg, splits, site_name, masks)
    device = device or torch.device("cpu")
    data = load_site(site_dir, cfg, splits, site_name, masks=True, hu=True)
    harmoniser = HARMONISERS.create(cfg.harmonise)
    if reference_domain and not harmoniser.per_image:
        _apply(data, None, cfg, masks)
        return data
    reference, _ = load_reference(site_dir, cfg)
    if reference_domain:  # a per-image method: the same mapping everywhere
        _apply(data, harmoniser.fit([], reference, cfg, device).mapping, cfg, masks)
        return data
    else:
        own = _own_scans(data)
        if not own:
            log.warning("Site %s: no training CT to fit harmonisation on", data.name)
            fitted = Fitted(None, {"harmonise-fallback": 1.0})
        else:
            fitted = fit_site(cfg, own, reference, device)
    _apply(data, fitted.mapping, cfg, masks)
    data.harmonise = {
        k: float(fitted.metrics.get(k, math.nan)) for k in report_keys(cfg.harmonise)
    }
    return data


def preview(site_dir: Path, cfg: DataConfig, out: Path, cases: int = 4) -> str:
    """Draw ``cases`` training scans of the site before and after ``cfg``'s
    harmonisation (middle liver slice, liver contour) into ``out``; return the
    guard-rail verdict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = load_site(site_dir, cfg, ("train",), masks=True, hu=True)
    own = _own_scans(data)
    if not own:
        raise ValueError(f"{site_dir}: no training CT with a label map to show")
    reference, _ = load_reference(site_dir, cfg)
    fitted = fit_site(cfg, own, reference, torch.device("cpu"))
    mapping = fitted.mapping or (lambda ct, seg: ct)
    shown = own[:cases]
    fig, axes = plt.subplots(2, len(shown), figsize=(2.6 * len(shown), 5.4))
    axes = np.array(axes).reshape(2, len(shown))
    for j, s in enumerate(shown):
        z = int(np.argmax((s[MASK][0] >= LIVER).sum(dim=(0, 1))))
        for i, vol in enumerate((s[CT], mapping(s[CT], s[MASK]))):
            ax = axes[i, j]
            ax.imshow(vol[0, :, :, z].T.numpy(), cmap="gray", vmin=-200, vmax=300)
            ax.contour((s[MASK][0, :, :, z] >= LIVER).T.numpy(), [0.5], colors="y")
            ax.set_axis_off()
            ax.set_title(("before" if i == 0 else "after") + f", scan {j + 1}")
    ok = fitted.metrics.get("harmonise-fallback", 0.0) == 0.0
    verdict = (
        f"{cfg.harmonise}: guard rails {'hold' if ok else 'failed: falls back to none'}"
    )
    fig.suptitle(f"{site_dir.name}: {verdict} (HU window -200..300)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return verdict
