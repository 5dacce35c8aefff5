"""Track ``compose``: compositional image-text matching (SugarCrepe, ARO, DOCCI-style retrieval).

Work in progress: the parts below are being built; the track is not yet in the registry
(``matchbench.tracks.NAMES``).

- ``synth``: the mini-world's vision-language part (scenes of objects with attributes and
  relations; captions; SugarCrepe, ARO and DOCCI layouts).
- ``families``: the ``sugarcrepe``, ``aro``, ``docci`` and ``miniworld-vl`` dataset families.
- ``recipe``: the ``clip`` recipes (contrastive training with a caption source, sentence
  sampling, a text tower from scratch or pretrained, hard negatives) and the text tower's
  masked-language-model pretraining.
- ``evaluate``: SugarCrepe, ARO and DOCCI-style retrieval metrics with bootstrap intervals.

Tables of a prepared dataset (``data/<dataset>/``), besides ``images.parquet``:

- ``captions.parquet``: ``image`` (an id of images.parquet), ``split``, ``alt`` (a short
  alt-text-like caption, "" when none), ``rich`` (a long description of several sentences,
  "" when none).
- ``caption_pairs.parquet``: ``id`` (unique), ``benchmark`` (``sugarcrepe``,
  ``aro_relation``, ``aro_attribution``), ``category`` (SugarCrepe's file name such as
  ``replace_obj``; ARO's relation, or attribute pair), ``image`` (an id of images.parquet; ARO's
  crops are images of their own), ``positive``, ``negative`` (captions).
"""
