"""The tables of a prepared composed-retrieval dataset (no torch here).

``prepare`` of every ``cir`` family (``cirr``, ``circo``, ``fashioniq``, ``miniworld-cir``)
writes, under ``data/<dataset>/``, besides ``images.parquet`` (every image a query or a
gallery names; ``class`` "", ``label`` -1):

``cir_queries.parquet``, one row per composed query (or per training triplet):

- ``id`` (str, unique): ``<split>/<pairid>`` (CIRR), ``<split>/<id>`` (CIRCO),
  ``<category>/<split>/<index>`` (FashionIQ; the index: the triplet's 0-based position in its
  caption file); the split is part of the id because the official ids repeat across splits
  (``submission`` keeps the file's own key);
- ``benchmark``: ``cirr`` | ``circo`` | ``fashioniq`` | ``triplets`` (training triplets);
- ``split``: ``train`` | ``val`` | ``test`` (CIRR's ``test1`` is ``test``);
- ``category``: FashionIQ's garment category (``dress``, ``shirt``, ``toptee``), else "";
- ``gallery``: the name of the gallery the query ranks (rows of ``cir_gallery.parquet``);
- ``reference``: an image id of images.parquet;
- ``caption``: the modification text the methods read (FashionIQ: its two captions joined as
  :func:`fashioniq_caption` does);
- ``captions`` (list of str): the file's own caption(s), for the record;
- ``targets`` (list of str): image ids of the ground truth (CIRR ``[target_hard]``; CIRCO
  ``gt_img_ids``, the target first; FashionIQ ``[target]``); empty where the split's ground
  truth is kept by an evaluation server;
- ``members`` (list of str): CIRR's ``img_set.members`` (image ids), else empty;
- ``aspects`` (list of str): CIRCO's ``semantic_aspects``, else empty;
- ``shared_concept`` (str): CIRCO's, else "";
- ``submission`` (str): the query's key in the benchmark's submission file (CIRR pairid,
  CIRCO id, FashionIQ index within its category).

``cir_gallery.parquet``: ``gallery`` (str), ``image`` (an id of images.parquet), one row per
image of each gallery (CIRR: ``<split>``, the split's ``image_splits`` file; CIRCO: ``all``, the
COCO unlabeled images, shared by val and test; FashionIQ: ``<category>/<split>``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from matchbench.errors import MatchbenchError

QUERIES = "cir_queries"
GALLERY = "cir_gallery"
TABLES = (f"{QUERIES}.parquet", f"{GALLERY}.parquet")
BENCHMARKS = ("cirr", "circo", "fashioniq", "triplets")
QUERY_COLUMNS = [
    "id",
    "benchmark",
    "split",
    "category",
    "gallery",
    "reference",
    "caption",
    "captions",
    "targets",
    "members",
    "aspects",
    "shared_concept",
    "submission",
]
LIST_COLUMNS = ("captions", "targets", "members", "aspects")
GALLERY_COLUMNS = ["gallery", "image"]
# The benchmarks' cut-offs (evaluation and `matchbench score` alike).
CIRR_KS = (1, 5, 10, 50)
CIRR_SUBSET_KS = (1, 2, 3)
CIRCO_KS = (5, 10, 25, 50)
FASHIONIQ_KS = (10, 50)


def fashioniq_caption(captions: list[str]) -> str:
    """FashionIQ's two relative captions as one modification text, as SEARLE and Pic2Word
    join them: the first stripped of ``.?, `` and capitalised, "and", the second stripped."""
    parts = [c.strip(".?, ") for c in captions]
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0].capitalize()
    return f"{parts[0].capitalize()} and {parts[1]}"


def read_queries(path: str | Path) -> pd.DataFrame:
    """``cir_queries.parquet``, its list columns as Python lists, checked for its columns."""
    path = Path(path)
    if not path.is_file():
        raise MatchbenchError(f"{path}: not found; prepare the dataset first")
    df = pd.read_parquet(path)
    missing = [c for c in QUERY_COLUMNS if c not in df.columns]
    if missing:
        raise MatchbenchError(f"{path}: missing column(s) {', '.join(missing)}")
    for c in LIST_COLUMNS:
        df[c] = [list(v) if v is not None else [] for v in df[c]]
    return df[QUERY_COLUMNS]


def read_gallery(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise MatchbenchError(f"{path}: not found; prepare the dataset first")
    df = pd.read_parquet(path)
    missing = [c for c in GALLERY_COLUMNS if c not in df.columns]
    if missing:
        raise MatchbenchError(f"{path}: missing column(s) {', '.join(missing)}")
    return df[GALLERY_COLUMNS].astype(str)
