"""Record and metric keys shared by client, server and run store.

``num-examples`` is always a number of samples (never of batches): FedAvg weights
the sites' updates by it.
"""

# Message content records
ARRAYS = "arrays"
METRICS = "metrics"
CONFIG = "config"
SITE = "site"  # ConfigRecord in every reply: which site answered
SITE_ID = "site-id"
POLICY_SHA256 = "policy-sha256"  # in the site record: the site policy's hash
# error code of a reply the site refused under its own policy (client.policy)
SITE_POLICY_REFUSED = 1004

# Config keys the server puts in per-round ConfigRecords
SERVER_ROUND = "server-round"
PROXIMAL_MU = "proximal-mu"  # set by Flower's FedProx
SWEEP_INDEX = "sweep-index"  # which entry of run-config "sweep" to train
RUN_LINEAGE = "run-lineage"  # the server's run id: the same for its resumptions

# Metric keys
NUM_EXAMPLES = "num-examples"
NUM_QUARANTINED = "num-quarantined"
# a site's reply metric: 1.0 when its metrics were withheld (too few cases)
SUPPRESSED = "suppressed"
LOSS = "loss"
AUC = "auc"
# example-level differential privacy (dp = "sample"): what a site has spent so far
# over the whole run, and what that figure is computed from (common.ml.privacy)
DP_EPSILON = "dp-epsilon"
DP_DELTA = "dp-delta"
DP_NOISE = "dp-noise-multiplier"
DP_SAMPLE_RATE = "dp-sample-rate"
DP_STEPS = "dp-steps"
DP_KEYS = (DP_EPSILON, DP_DELTA, DP_NOISE, DP_SAMPLE_RATE, DP_STEPS)
# dp = "central": the server's accounting of its noisy releases (run store)
DP_CLIPPING_NORM = "dp-clipping-norm"
DP_RELEASES = "dp-releases"
# dp = "central": every reply's FedAvg weight (1: the mean weighs sites alike)
UNIT_WEIGHT = "unit-weight"
ACCURACY = "accuracy"
F1 = "f1"
SENSITIVITY = "sensitivity"
SPECIFICITY = "specificity"
BRIER = "brier"
ELAPSED = "elapsed-s"  # seconds since the strategy started (server-side)
CLASSIFICATION_METRICS = (AUC, ACCURACY, F1, SENSITIVITY, SPECIFICITY, BRIER)
C_INDEX = "c-index"  # Harrell's concordance (survival task)
N_EVENTS = "n-events"
SURVIVAL_METRICS = (C_INDEX, N_EVENTS)
TIME = "time"  # sample-dict keys of the survival task (days; 1 = event observed)
EVENT = "event"
MASK = "mask"  # sample-dict key of the LiTS label map (segmentation task)

# Sample-dict keys (see docs/architecture.md)
CT = "ct"
CLINICAL = "clinical"
LABEL = "label"
SITE_KEY = "site"
CASE_ID = "case_id"
GENOMICS = "genomics"
HISTOLOGY = "histology"
MODALITIES = (CT, CLINICAL, GENOMICS, HISTOLOGY)


def present_key(modality: str) -> str:
    """Key of the presence flag of ``modality`` in a sample dict (1.0 present)."""
    return f"{modality}_present"
