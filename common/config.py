"""Typed run configuration.

Flower hands every app a flat dict of kebab-case keys (``context.run_config``).
:func:`from_run_config` is the only place that reads it: it maps each key onto a
field of one frozen dataclass per concern, converts and validates the value, and
rejects unknown keys by name. The resolved config is saved with every run
(:meth:`OncoFedConfig.to_flat`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from typing import Any

from oncofed.common.errors import ConfigError
from oncofed.common.keys import MODALITIES
from oncofed.common.registry import look_up_option, suggestion


def _key(name: str, doc: str) -> Any:
    """Dataclass field metadata: the run-config key and a one-line help."""
    return {"key": name, "doc": doc}


HARMONISE_OPTIONS = (
    "none",
    "histogram",
    "zscore",
    "fedbn",
    "cyclegan",
)
# they map HU, before the window
HU_HARMONISERS = ("histogram", "zscore", "cyclegan")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = field(
        default="synthetic", metadata=_key("dataset", "dataset registry name")
    )
    data_root: str = field(
        default="",
        metadata=_key(
            "data-root", "prepared dataset folder; '' = the dataset's default cache"
        ),
    )
    data_view: str = field(
        default="",
        metadata=_key(
            "data-view",
            "a prepared folder inside data-root, by name (letters, digits, '-', "
            "'_'): what a sweep entry may vary, since it may set no path",
        ),
    )
    num_sites: int = field(
        default=7, metadata=_key("num-sites", "virtual hospitals (simulation)")
    )
    seed: int = field(default=2024, metadata=_key("seed", "seed of data and training"))
    image_size: int = field(
        default=64, metadata=_key("image-size", "in-plane size CT is resampled to")
    )
    image_depth: int = field(
        default=16, metadata=_key("image-depth", "slices CT is resampled to")
    )
    hu_min: float = field(default=-200.0, metadata=_key("hu-min", "HU window low"))
    hu_max: float = field(default=250.0, metadata=_key("hu-max", "HU window high"))
    bag_size: int = field(
        default=8, metadata=_key("bag-size", "histology tiles per patient bag")
    )
    tile_size: int = field(
        default=64, metadata=_key("tile-size", "histology tile side after resizing")
    )
    harmonise: str = field(
        default="none",
        metadata=_key(
            "harmonise",
            "map each site's CT to the public reference cohort's scanner before "
            "the model sees it: 'none', 'histogram' (histogram matching to the "
            "reference cohort), 'zscore' (z-score within the liver, on the "
            "reference's liver scale), 'fedbn' (no mapping; norm-layers = 'local'), "
            "'cyclegan' (each site's own CycleGAN); all but none/fedbn need a "
            "reference/ cohort in each site folder",
        ),
    )
    label_fraction: float = field(
        default=1.0,
        metadata=_key(
            "label-fraction",
            "share of each site's training labels used (stratified by class, "
            "seeded; at least one case of each class): label-efficiency studies",
        ),
    )
    harmonise_steps: int = field(
        default=1500,
        metadata=_key(
            "harmonise-steps",
            "harmonise = 'cyclegan': training updates of each site's CycleGAN "
            "(about 80 s per site on 2 CPU cores at image-size 32; at 300 every "
            "scanner-shift site failed its guard rails)",
        ),
    )
    ct_roi: str = field(
        default="none",
        metadata=_key(
            "ct-roi",
            "CT field of view the model sees: 'none' (the whole scan) or 'liver' "
            "(cropped to the liver in the case's label map; needs mask_path)",
        ),
    )
    imputation: str = field(
        default="reference",
        metadata=_key(
            "imputation",
            "missing clinical values: 'reference' (fixed normal value + indicator) "
            "or 'mice' (IterativeImputer fitted on the site's training split)",
        ),
    )


@dataclass(frozen=True)
class ModelConfig:
    family: str = field(
        default="neural",
        metadata=_key(
            "model-family",
            "'neural' (encoders + fusion) or 'xgboost' (clinical XGBoost baseline, "
            "strategy fedxgb_bagging)",
        ),
    )
    xgb_max_depth: int = field(
        default=3, metadata=_key("xgb-max-depth", "XGBoost tree depth")
    )
    xgb_eta: float = field(default=0.1, metadata=_key("xgb-eta", "XGBoost shrinkage"))
    task: str = field(
        default="classification",
        metadata=_key(
            "task",
            "'classification' (binary label, BCE, AUC), 'survival' (Cox head on "
            "time and event, C-index), 'segmentation' (UNet on CT, Dice) or "
            "'pretrain' (Models Genesis restoration of CT, no labels; writes "
            "checkpoints/ct-encoder.pt for run-config 'pretrained')",
        ),
    )
    image_encoder: str = field(
        default="tiny3d", metadata=_key("image-encoder", "CT encoder registry name")
    )
    clinical_encoder: str = field(
        default="mlp", metadata=_key("clinical-encoder", "clinical encoder name")
    )
    genomics_encoder: str = field(
        default="mlp", metadata=_key("genomics-encoder", "genomics encoder name")
    )
    histology_encoder: str = field(
        default="attention_mil",
        metadata=_key("histology-encoder", "histology bag encoder name"),
    )
    fusion: str = field(
        default="concat", metadata=_key("fusion", "fusion head registry name")
    )
    embed_dim: int = field(
        default=64, metadata=_key("embed-dim", "embedding size per modality")
    )
    modalities: str = field(
        default="ct,clinical",
        metadata=_key("modalities", "comma-separated modalities the model uses"),
    )
    modality_dropout: float = field(
        default=0.25,
        metadata=_key("modality-dropout", "chance a present modality is hidden"),
    )
    aux_loss_weight: float = field(
        default=0.5,
        metadata=_key("aux-loss-weight", "weight of per-modality auxiliary losses"),
    )
    norm_layers: str = field(
        default="aggregate",
        metadata=_key(
            "norm-layers",
            "normalisation layers: 'aggregate' (averaged like every weight) or "
            "'local' (FedBN: each site keeps its own)",
        ),
    )
    contrastive_weight: float = field(
        default=0.0,
        metadata=_key(
            "contrastive-weight",
            "weight of the CLIP-style loss aligning modality embeddings (0 = off)",
        ),
    )
    pretrained: str = field(
        default="",
        metadata=_key(
            "pretrained",
            "local weights: one file for the CT encoder, or per modality "
            "'ct=/w/ct.pt,histology=/w/tiles.pt' (clinical, genomics too)",
        ),
    )

    @property
    def pretrained_files(self) -> dict[str, str]:
        """``pretrained`` as {modality: file}; a bare path means the CT encoder."""
        text = self.pretrained.strip()
        if not text:
            return {}
        if "=" not in text:
            return {"ct": text}
        out = {}
        for part in text.split(","):
            modality, _, path = part.partition("=")
            out[modality.strip()] = path.strip()
        return out

    @property
    def modality_list(self) -> tuple[str, ...]:
        return tuple(m.strip() for m in self.modalities.split(",") if m.strip())


@dataclass(frozen=True)
class TrainConfig:
    local_epochs: int = field(
        default=2, metadata=_key("local-epochs", "epochs per round at each site")
    )
    batch_size: int = field(default=8, metadata=_key("batch-size", "samples/batch"))
    learning_rate: float = field(
        default=1e-3, metadata=_key("learning-rate", "local optimiser learning rate")
    )
    weight_decay: float = field(
        default=1e-4, metadata=_key("weight-decay", "local AdamW weight decay")
    )
    augment: bool = field(
        default=True, metadata=_key("augment", "random intensity/flip augmentation")
    )
    max_grad_norm: float = field(
        default=1.0, metadata=_key("max-grad-norm", "gradient clipping; 0 = off")
    )
    device: str = field(
        default="auto", metadata=_key("device", "auto | cpu | cuda | cuda:N")
    )


@dataclass(frozen=True)
class FederationConfig:
    num_server_rounds: int = field(
        default=8, metadata=_key("num-server-rounds", "federated rounds")
    )
    strategy: str = field(
        default="fedavg",
        metadata=_key(
            "strategy",
            "fedavg | fedprox | fedadam | fedmedian | fedtrimmedavg | krum | "
            "multikrum | bulyan | fedxgb_bagging",
        ),
    )
    proximal_mu: float = field(
        default=0.01, metadata=_key("proximal-mu", "FedProx proximal weight")
    )
    server_learning_rate: float = field(
        default=0.01,
        metadata=_key("server-learning-rate", "FedAdam server step size (eta)"),
    )
    fraction_train: float = field(
        default=1.0, metadata=_key("fraction-train", "fraction of sites per round")
    )
    fraction_evaluate: float = field(
        default=1.0,
        metadata=_key("fraction-evaluate", "fraction of sites evaluating"),
    )
    min_sites: int = field(
        default=2, metadata=_key("min-sites", "sites needed to start a round")
    )
    round_timeout: float = field(
        default=3600.0, metadata=_key("round-timeout", "seconds to wait per round")
    )
    update_norm_bound: float = field(
        default=10.0,
        metadata=_key(
            "update-norm-bound",
            "reject a site's update whose L2 norm exceeds this multiple of the "
            "round's median update norm (0 = no bound)",
        ),
    )
    update_clip: bool = field(
        default=False,
        metadata=_key(
            "update-clip",
            "scale an update above update-norm-bound down to the bound instead of "
            "rejecting it",
        ),
    )
    max_site_examples: int = field(
        default=100_000,
        metadata=_key(
            "max-site-examples",
            "largest num-examples a reply may claim (later rounds: at most the "
            "site's first-round figure)",
        ),
    )
    byzantine_sites: int = field(
        default=1,
        metadata=_key(
            "byzantine-sites",
            "sites assumed malicious by krum, multikrum and bulyan (bulyan needs "
            "4 x this + 3 replies per round)",
        ),
    )
    trim_fraction: float = field(
        default=0.2,
        metadata=_key(
            "trim-fraction",
            "fedtrimmedavg: share of the largest and of the smallest values cut "
            "per coordinate",
        ),
    )
    attack: str = field(
        default="none",
        metadata=_key(
            "attack",
            "red-team mode, simulation only: 'sign-flip', 'scale', 'noise', 'nan', "
            "'label-flip' or 'impersonate' at attack-sites sites; 'none'",
        ),
    )
    attack_sites: int = field(
        default=0,
        metadata=_key("attack-sites", "how many sites attack (the first k by node)"),
    )


@dataclass(frozen=True)
class PrivacyConfig:
    min_report_n: int = field(
        default=10,
        metadata=_key(
            "min-report-n",
            "a site sends metrics only if computed on at least this many cases "
            "(else num-examples and a 'suppressed' flag)",
        ),
    )
    min_report_class_n: int = field(
        default=3,
        metadata=_key(
            "min-report-class-n",
            "... and at least this many cases of each class (survival: events "
            "and censored)",
        ),
    )
    dp: str = field(
        default="off",
        metadata=_key(
            "dp",
            "differential privacy: 'off', 'sample' (example-level DP-SGD at each "
            "site, Opacus) or 'central' (site-level, on the server's aggregate)",
        ),
    )
    dp_epsilon: float = field(
        default=3.0,
        metadata=_key(
            "dp-epsilon", "dp 'sample': each site's epsilon for the whole run"
        ),
    )
    dp_delta: float = field(
        default=1e-5,
        metadata=_key(
            "dp-delta", "dp 'sample': delta (fixed 1e-5 by default; must be < 1/N)"
        ),
    )
    dp_max_grad_norm: float = field(
        default=1.0,
        metadata=_key(
            "dp-max-grad-norm", "dp 'sample': each case's gradient is clipped to this"
        ),
    )
    dp_accountant: str = field(
        default="prv",
        metadata=_key("dp-accountant", "dp 'sample': privacy accountant, prv | rdp"),
    )

    dp_noise_multiplier: float = field(
        default=1.0,
        metadata=_key(
            "dp-noise-multiplier",
            "dp 'central': noise std of the server's aggregate, in clipping norms",
        ),
    )
    dp_clipping_norm: float = field(
        default=1.0,
        metadata=_key(
            "dp-clipping-norm",
            "dp 'central': each site's update is clipped to this L2 norm "
            "(adaptive: the first round's)",
        ),
    )
    dp_clipping: str = field(
        default="server-fixed",
        metadata=_key(
            "dp-clipping",
            "dp 'central': where and how updates are clipped: server-fixed | "
            "client-fixed | server-adaptive | client-adaptive",
        ),
    )

    secure_aggregation: bool = field(
        default=False,
        metadata=_key(
            "secure-aggregation",
            "SecAgg+ (Flower's): the server only ever unmasks the sum of the "
            "sites' weighted updates",
        ),
    )

    @property
    def per_example(self) -> bool:
        """Example-level DP-SGD at the sites (``dp = "sample"``)."""
        return self.dp == "sample"


@dataclass(frozen=True)
class RunConfig:
    run_dir: str = field(
        default="",
        metadata=_key("run-dir", "absolute run root; '' = $ONCOFED_HOME/runs"),
    )
    sweep: str = field(
        default="",
        metadata=_key(
            "sweep",
            "several models in one Flower run, one after the other on the same "
            "sites: ';'-separated entries of space-separated key=value overrides, "
            "e.g. 'fusion=concat; fusion=transformer'; '' = one model",
        ),
    )
    tracking: str = field(
        default="none",
        metadata=_key(
            "tracking",
            "also log the run to an experiment tracker in the run folder: "
            "'mlflow' (RUN/mlflow/mlflow.db), 'tensorboard' (RUN/tensorboard/) or "
            "'none'; needs pip install 'oncofed[tracking]'",
        ),
    )
    resume_from: str = field(
        default="",
        metadata=_key(
            "resume-from",
            "absolute path of an interrupted run's folder: continue it from its "
            "last complete round (oncofed resume RUN_DIR sets it); '' = a new run",
        ),
    )


@dataclass(frozen=True)
class OncoFedConfig:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    federation: FederationConfig = FederationConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    run: RunConfig = RunConfig()

    def to_flat(self) -> dict[str, Any]:
        """The resolved config as flat kebab-case keys (what is saved per run)."""
        out: dict[str, Any] = {}
        for section in fields(self):
            sub = getattr(self, section.name)
            for f in fields(sub):
                out[f.metadata["key"]] = getattr(sub, f.name)
        return out


SECTIONS = tuple(f.name for f in fields(OncoFedConfig))


def _key_table() -> dict[str, tuple[str, dataclasses.Field[Any]]]:
    """kebab-case key -> (section attribute, dataclass field)."""
    table: dict[str, tuple[str, dataclasses.Field[Any]]] = {}
    default = OncoFedConfig()
    for section in fields(OncoFedConfig):
        for f in fields(getattr(default, section.name)):
            table[f.metadata["key"]] = (section.name, f)
    return table


KEYS = _key_table()


def _convert(key: str, value: Any, target: Any) -> Any:
    kind = type(target)
    try:
        if kind is bool:
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes")
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"Run-config key '{key}' = {value!r} is not a valid {kind.__name__}. "
            f"Fix: give a {kind.__name__}, e.g. {key}={target!r}."
        ) from None


def from_run_config(run_config: dict[str, Any]) -> OncoFedConfig:
    """Build the typed config from Flower's flat run config.

    Raises
    ------
    ConfigError
        For an unknown key (with the closest known key) or a value of the wrong type
        or out of range.
    """
    default = OncoFedConfig()
    per_section: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in run_config.items():
        if key not in KEYS:
            raise ConfigError(
                f"Unknown run-config key '{key}'.{suggestion(key, KEYS)} "
                f"Known keys: {', '.join(sorted(KEYS))}."
            )
        section, f = KEYS[key]
        target = getattr(getattr(default, section), f.name)
        per_section[section][f.name] = _convert(key, value, target)
    cfg = OncoFedConfig(
        **{
            name: dataclasses.replace(getattr(default, name), **vals)
            for name, vals in per_section.items()
        }
    )
    if cfg.data.harmonise == "fedbn":  # FedBN: the sites keep their norm layers
        cfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, norm_layers="local")
        )
    _validate(cfg)
    for k in range(len(parse_sweep(cfg.run.sweep))):
        entry = sweep_run_config(run_config, k)  # every entry must resolve too
        if str(entry.get("dp", "off")) == "sample":
            raise ConfigError(
                f"Run-config key 'sweep', entry {k + 1}: with dp 'sample' each "
                "model spends the sites' privacy budget: train one model per run."
            )
    return cfg


# what names a file or folder
PATH_KEYS = ("run-dir", "data-root", "pretrained", "resume-from")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def parse_sweep(sweep: str) -> list[dict[str, str]]:
    """``"fusion=concat modalities=ct; fusion=transformer"`` -> one dict of
    run-config overrides per entry; ``""`` -> ``[]`` (no sweep)."""
    entries: list[dict[str, str]] = []
    for n, text in enumerate(sweep.split(";"), start=1):
        if not text.strip():
            continue
        entry: dict[str, str] = {}
        for pair in text.split():
            key, eq, value = pair.partition("=")
            if not eq or not key:
                raise ConfigError(
                    f"Run-config key 'sweep', entry {n} ({text.strip()!r}): "
                    f"{pair!r} is not key=value. Fix: e.g. sweep='fusion=concat; "
                    "fusion=transformer'."
                )
            if key == "sweep":
                raise ConfigError(
                    f"Run-config key 'sweep', entry {n}: a sweep entry cannot "
                    "itself set 'sweep'."
                )
            if key in PATH_KEYS:
                raise ConfigError(
                    f"Run-config key 'sweep', entry {n}: a sweep entry cannot set "
                    f"'{key}' (a path: set it once for the run)."
                )
            entry[key] = value.strip("'\"")
        entries.append(entry)
    return entries


def sweep_label(index: int) -> str:
    """Suffix of sweep entry ``index``'s run id and run folder: ``sweep<k>``."""
    return f"sweep{index}"


def sweep_run_config(run_config: dict[str, Any], index: int | None) -> dict[str, Any]:
    """The flat run config of sweep entry ``index`` (``None``: the run's own).

    Raises ConfigError for an entry that does not resolve, naming the entry."""
    if index is None:
        return dict(run_config)
    entries = parse_sweep(str(run_config.get("sweep", "")))
    if not 0 <= index < len(entries):
        raise ConfigError(
            f"sweep entry {index} requested but the run's 'sweep' has "
            f"{len(entries)} entries"
        )
    merged = {**run_config, **entries[index], "sweep": ""}
    try:
        from_run_config(merged)
    except ConfigError as err:
        raise ConfigError(f"Run-config key 'sweep', entry {index + 1}: {err}") from None
    return merged


def _validate(cfg: OncoFedConfig) -> None:
    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            value = cfg.to_flat()[key]
            raise ConfigError(f"Run-config key '{key}' = {value!r}: {what}.")

    need(cfg.federation.num_server_rounds >= 1, "num-server-rounds", "must be >= 1")
    need(cfg.train.local_epochs >= 1, "local-epochs", "must be >= 1")
    need(cfg.privacy.min_report_n >= 1, "min-report-n", "must be >= 1")
    need(cfg.privacy.min_report_class_n >= 0, "min-report-class-n", "must be >= 0")
    need(cfg.train.batch_size >= 1, "batch-size", "must be >= 1")
    need(cfg.train.learning_rate > 0, "learning-rate", "must be > 0")
    need(cfg.data.num_sites >= 1, "num-sites", "must be >= 1")
    need(cfg.data.image_size >= 16, "image-size", "must be >= 16")
    need(cfg.data.image_depth >= 4, "image-depth", "must be >= 4")
    need(cfg.data.bag_size >= 1, "bag-size", "must be >= 1")
    need(cfg.data.tile_size >= 16, "tile-size", "must be >= 16")
    need(cfg.data.hu_max > cfg.data.hu_min, "hu-max", "must be above hu-min")
    need(0 < cfg.federation.fraction_train <= 1, "fraction-train", "must be in (0, 1]")
    need(
        0 <= cfg.federation.fraction_evaluate <= 1,
        "fraction-evaluate",
        "must be in [0, 1]",
    )
    need(
        cfg.run.run_dir == "" or cfg.run.run_dir.startswith("/"),
        "run-dir",
        "must be an absolute path (the ServerApp runs in the SuperLink's folder)",
    )
    need(
        cfg.run.resume_from == "" or cfg.run.resume_from.startswith("/"),
        "resume-from",
        "must be an absolute path (a run folder: RUN_DIR/<timestamp>-run<id>)",
    )
    need(
        cfg.run.resume_from == "" or cfg.run.sweep == "",
        "resume-from",
        "resumes one model's run: resume each sweep entry's own folder "
        "(<timestamp>-run<id>-sweep<k>), without 'sweep'",
    )
    _validate_federation(cfg, need)
    need(
        not cfg.data.data_view
        or (bool(cfg.data.data_root) and _NAME.match(cfg.data.data_view) is not None),
        "data-view",
        "a folder name inside data-root (letters, digits, '-', '_'); set data-root",
    )
    look_up_option(cfg.run.tracking, ("none", "mlflow", "tensorboard"), "tracking")
    look_up_option(cfg.data.imputation, ("reference", "mice"), "imputation")
    need(
        cfg.data.harmonise != "cyclegan-fedd",
        "harmonise",
        "'cyclegan-fedd' was removed: federating CycleGAN's reference-side "
        "discriminator did not help (BENCHMARKS.md, scanner harmonisation); use "
        "'cyclegan', or 'none'",
    )
    look_up_option(cfg.data.harmonise, HARMONISE_OPTIONS, "harmonise")
    need(cfg.data.harmonise_steps >= 1, "harmonise-steps", "must be >= 1")
    need(0 < cfg.data.label_fraction <= 1, "label-fraction", "must be in (0, 1]")
    need(
        cfg.data.harmonise not in HU_HARMONISERS or cfg.data.ct_roi == "liver",
        "harmonise",
        f"'{cfg.data.harmonise}' works on the liver crop: set ct-roi = 'liver'",
    )
    need(
        cfg.data.harmonise != "cyclegan" or cfg.data.image_size % 4 == 0,
        "image-size",
        f"harmonise = '{cfg.data.harmonise}' needs an image-size divisible by 4",
    )
    look_up_option(cfg.data.ct_roi, ("none", "liver"), "ct-roi")
    need(bool(cfg.model.modality_list), "modalities", "name at least one modality")
    for modality in cfg.model.modality_list:
        look_up_option(modality, MODALITIES, "modality in run-config key 'modalities'")
    for modality, path in cfg.model.pretrained_files.items():
        look_up_option(modality, MODALITIES, "modality in run-config key 'pretrained'")
        need(bool(path), "pretrained", f"give a file after '{modality}='")
    need(0 <= cfg.model.modality_dropout < 1, "modality-dropout", "must be in [0, 1)")
    need(cfg.model.contrastive_weight >= 0, "contrastive-weight", "must be >= 0")
    look_up_option(cfg.model.norm_layers, ("aggregate", "local"), "norm-layers")
    look_up_option(
        cfg.model.task,
        ("classification", "survival", "segmentation", "pretrain"),
        "task",
    )
    need(
        cfg.model.task != "segmentation" or cfg.model.modality_list == ("ct",),
        "modalities",
        "task 'segmentation' segments CT: set modalities = 'ct'",
    )
    need(
        cfg.model.task != "pretrain" or cfg.model.modality_list == ("ct",),
        "modalities",
        "task 'pretrain' (Models Genesis) restores CT: set modalities = 'ct'",
    )
    need(
        cfg.model.task != "pretrain" or cfg.data.label_fraction == 1.0,
        "label-fraction",
        "task 'pretrain' uses no labels: leave label-fraction at 1",
    )
    need(
        cfg.model.task != "pretrain" or cfg.privacy.dp == "off",
        "dp",
        "task 'pretrain' has no DP-SGD path yet: set dp = 'off'",
    )
    look_up_option(cfg.model.family, ("neural", "xgboost"), "model-family")
    _validate_dp(cfg, need)
    xgb = cfg.model.family == "xgboost"
    need(
        xgb == (cfg.federation.strategy == "fedxgb_bagging"),
        "strategy",
        "model-family 'xgboost' goes with strategy 'fedxgb_bagging' and only with it",
    )
    need(
        not xgb or cfg.model.task == "classification",
        "task",
        "the XGBoost baseline is a classifier",
    )


ATTACKS = ("none", "sign-flip", "scale", "noise", "nan", "label-flip", "impersonate")


def _validate_federation(cfg: OncoFedConfig, need: Any) -> None:
    fed = cfg.federation
    need(fed.min_sites >= 1, "min-sites", "must be >= 1")
    need(fed.update_norm_bound >= 0, "update-norm-bound", "must be >= 0 (0: no bound)")
    need(fed.max_site_examples >= 1, "max-site-examples", "must be >= 1")
    need(fed.byzantine_sites >= 0, "byzantine-sites", "must be >= 0")
    need(0 <= fed.trim_fraction < 0.5, "trim-fraction", "must be in [0, 0.5)")
    look_up_option(fed.attack, ATTACKS, "attack")
    need(fed.attack_sites >= 0, "attack-sites", "must be >= 0")
    need(
        fed.attack == "none" or not cfg.privacy.secure_aggregation,
        "attack",
        "the red-team mode does not run under secure-aggregation",
    )
    need(
        fed.attack == "none" or fed.attack_sites >= 1,
        "attack-sites",
        f"attack '{fed.attack}' needs attack-sites >= 1",
    )


DP_MODES = ("off", "sample", "central")
CLIPPING = ("server-fixed", "client-fixed", "server-adaptive", "client-adaptive")


def _validate_secure(cfg: OncoFedConfig, need: Any) -> None:
    """SecAgg+ sums FedAvg's weighted updates of a neural model (Flower's legacy
    workflow: :mod:`server.secure`)."""
    why = "secure-aggregation (SecAgg+) runs"
    need(
        cfg.federation.strategy == "fedavg",
        "strategy",
        f"{why} FedAvg's weighted sum only: use fedavg",
    )
    need(
        cfg.privacy.dp != "central",
        "dp",
        f"{why} without Flower's central-DP wrappers: use dp 'sample' or 'off'",
    )
    need(cfg.run.sweep == "", "sweep", f"{why} one model per run")


def _validate_central(cfg: OncoFedConfig, need: Any) -> None:
    """Site-level DP on the server's aggregate: a plain mean of clipped updates
    plus Gaussian noise (Flower's wrappers), accounted per round."""
    dp = cfg.privacy
    need(dp.dp_noise_multiplier > 0, "dp-noise-multiplier", "must be > 0")
    need(dp.dp_clipping_norm > 0, "dp-clipping-norm", "must be > 0")
    need(0 < dp.dp_delta < 1, "dp-delta", "must be in (0, 1)")
    need(
        cfg.federation.strategy == "fedavg",
        "strategy",
        "dp 'central' adds its noise to FedAvg's mean of clipped updates: use fedavg",
    )


def _validate_dp(cfg: OncoFedConfig, need: Any) -> None:
    """Example-level DP-SGD holds only for a loss that is a mean of each case's own
    loss and an update made only of clipped per-case gradients plus noise."""
    dp = cfg.privacy
    look_up_option(dp.dp, DP_MODES, "dp")
    look_up_option(dp.dp_accountant, ("prv", "rdp"), "dp-accountant")
    look_up_option(dp.dp_clipping, CLIPPING, "dp-clipping")
    if dp.secure_aggregation:
        _validate_secure(cfg, need)
    if dp.dp == "central":
        _validate_central(cfg, need)
    if dp.dp != "sample":
        return
    need(dp.dp_epsilon > 0, "dp-epsilon", "must be > 0")
    need(0 < dp.dp_delta < 1, "dp-delta", "must be in (0, 1)")
    need(dp.dp_max_grad_norm > 0, "dp-max-grad-norm", "must be > 0")
    why = "dp 'sample' (example-level DP-SGD) cannot hold"
    need(
        cfg.model.family == "neural",
        "model-family",
        f"{why} for the XGBoost baseline: set dp='off' or model-family='neural'",
    )
    need(
        cfg.model.task == "classification",
        "task",
        f"{why} for a loss that couples cases (Cox partial likelihood) or for "
        "segmentation; dp 'sample' trains classifiers",
    )
    need(
        cfg.model.contrastive_weight == 0,
        "contrastive-weight",
        f"{why} for the contrastive loss, which compares the cases of a batch: "
        "set contrastive-weight=0",
    )
    need(
        cfg.federation.strategy in ("fedavg", "fedadam"),
        "strategy",
        f"{why} with FedProx: its proximal term is not a per-case gradient and "
        "Opacus would drop it; use fedavg or fedadam",
    )
    need(
        cfg.run.sweep == "",
        "sweep",
        "with dp 'sample' each model spends the sites' privacy budget: train one "
        "model per run",
    )
