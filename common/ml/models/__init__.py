"""Model families: encoder and fusion registries, and the multimodal network."""

from oncofed.common.ml.models.encoders import ENCODERS
from oncofed.common.ml.models.fusion import FUSIONS
from oncofed.common.ml.models.multimodal import (
    MultimodalNet,
    build_model,
    load_checkpoint,
)

__all__ = ["ENCODERS", "FUSIONS", "MultimodalNet", "build_model", "load_checkpoint"]
