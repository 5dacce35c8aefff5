"""Backbones (timm and open_clip factories), weights, and heads."""

from matchbench.models.backbones import Backbone, create_backbone

__all__ = ["Backbone", "create_backbone"]
