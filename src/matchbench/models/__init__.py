"""Encoders (timm and open_clip behind one interface), their factory, and their weights."""

from matchbench.models.backbones import check_backbones, create_backbone, load_model
from matchbench.models.encoders import Encoder, OpenClipEncoder, OptionError

__all__ = [
    "Encoder",
    "OpenClipEncoder",
    "OptionError",
    "check_backbones",
    "create_backbone",
    "load_model",
]
