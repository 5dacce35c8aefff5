"""matchbench: compare visual backbones and fine-tuning recipes under one reproducible protocol."""

__version__ = "0.1.0"
