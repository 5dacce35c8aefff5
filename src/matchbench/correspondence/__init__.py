"""The semantic-correspondence track: dense features, keypoint transfer, PCK.

- ``pairs``: the common pair table ``data/<dataset>/pairs.parquet`` (docs/contracts.md).
- ``dense``: dense feature maps of any timm / open_clip backbone at a square resolution, and
  the coordinate maps between an image's original frame and its feature grid.
"""
