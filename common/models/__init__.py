"""Model families: encoder and fusion registries, and the multimodal network."""

from common.models.encoders import ENCODERS
from common.models.fusion import FUSIONS
from common.models.multimodal import MultimodalNet, build_model, load_checkpoint

__all__ = ["ENCODERS", "FUSIONS", "MultimodalNet", "build_model", "load_checkpoint"]
