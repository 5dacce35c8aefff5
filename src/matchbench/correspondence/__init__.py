"""The semantic-correspondence track: dense features, keypoint transfer, PCK, the training loss.

- ``pairs``: the common pair table ``data/<dataset>/pairs.parquet`` (docs/contracts.md).
- ``dense``: dense feature maps of any timm / open_clip backbone at a square resolution, and
  the coordinate maps between an image's original frame and its feature grid.
- ``store``: the dense-map cache (``matchbench extract --dense``).
- ``match``: keypoint transfer (nn, bilinear, softmax, kernel_softmax).
- ``evaluate``: PCK per image and per point, per category and difficulty flag (task
  ``correspondence`` of ``matchbench evaluate``).
- ``loss``: the Gaussian-target softmax loss of the ``correspondence`` recipe (``train/``).
"""
