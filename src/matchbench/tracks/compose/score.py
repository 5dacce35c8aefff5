"""``matchbench score`` for the compose track's benchmarks: SugarCrepe and ARO prediction files.

The metrics are the pipeline's (``tracks.compose.evaluate``), under the same names, so a
model scored elsewhere sits beside the pipeline's models in one report:

- ``sugarcrepe``: ``{"<file>": {"<item id>": {"pos": s, "neg": s}}}`` for any of the seven
  files (``add_obj`` ... ``swap_att``); ``pos`` scores the image with its caption, ``neg`` with
  the negative. Metrics ``sugarcrepe_<file>`` and their macro average ``sugarcrepe_avg``.
- ``aro``: ``{"aro_relation": {"<index>": {"pos": s, "neg": s}}, "aro_attribution": {...}}``
  with either or both benchmarks; ``<index>`` is the item's position (from 0) in
  ``visual_genome_relation.json`` / ``visual_genome_attribution.json``, as the official loader
  enumerates them. Metrics ``aro_relation`` (symmetric relations dropped) and
  ``aro_attribution`` (attribute pairs with at least 25 items), macro averages.

A tie counts as wrong, as in both official evaluations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from matchbench.data.formats import aro, sugarcrepe
from matchbench.data.formats.predictions import (
    as_object,
    check_keys,
    examples,
    number,
    read_predictions,
    single,
)
from matchbench.errors import MatchbenchError
from matchbench.metrics import macro_summary, per_category, summarise
from matchbench.tracks.compose.evaluate import (
    aro_attribution_groups,
    aro_relation_groups,
    pair_correct,
)


def _pair_scores(
    entries: dict[str, Any], ids: list[str], path: Path, what: str
) -> tuple[np.ndarray, np.ndarray]:
    check_keys(entries, ids, path, f"{what} item")
    pos, neg = np.empty(len(ids)), np.empty(len(ids))
    for i, item_id in enumerate(ids):
        entry = f"{what}/{item_id}"
        e = entries[item_id]
        if not isinstance(e, dict) or set(e) != {"pos", "neg"}:
            raise MatchbenchError(
                f'{path}: entry {entry!r}: expected {{"pos": score, "neg": score}}'
            )
        pos[i] = number(e["pos"], path, entry, "'pos'")
        neg[i] = number(e["neg"], path, entry, "'neg'")
    return pos, neg


def _document(split: str | None) -> dict[str, Any]:
    return {"task": "compose", "split": split or "test", "metrics": {}, "per_category": {}}


def score_sugarcrepe(
    paths: list[Path], root: Path, split: str | None, n_boot: int, seed: int
) -> dict[str, Any]:
    path = single(paths, "sugarcrepe")
    items = sugarcrepe.read_items(root)
    data = as_object(read_predictions(path), path, "top level")
    unknown = [f for f in data if f not in sugarcrepe.FILES]
    if unknown or not data:
        raise MatchbenchError(
            f"{path}: top-level keys must be SugarCrepe files ({', '.join(sugarcrepe.FILES)}); "
            f"got {examples(unknown or ['nothing'])}"
        )
    out = _document(split)
    correct, category = [], []
    for name in (f for f in sugarcrepe.FILES if f in data):
        if name not in items:
            raise MatchbenchError(f"{path}: {name!r}: the annotations have no {name}.json")
        entries = as_object(data[name], path, f"file {name!r}")
        pos, neg = _pair_scores(entries, list(items[name]), path, name)
        ok = pair_correct(pos, neg)
        out["metrics"][f"sugarcrepe_{name}"] = summarise(ok, n_boot, seed)
        correct.append(ok)
        category += [name] * len(ok)
    c, g = np.concatenate(correct), np.asarray(category)
    out["metrics"]["sugarcrepe_avg"] = macro_summary(c, g, n_boot, seed)
    out["per_category"]["sugarcrepe"] = per_category(c, g)
    out["extra"] = {"files": sorted(set(category)), "items": int(c.size)}
    return out


def score_aro(
    paths: list[Path], root: Path, split: str | None, n_boot: int, seed: int
) -> dict[str, Any]:
    path = single(paths, "aro")
    data = as_object(read_predictions(path), path, "top level")
    unknown = [b for b in data if b not in aro.FILES]
    if unknown or not data:
        raise MatchbenchError(
            f"{path}: top-level keys must be ARO benchmarks ({', '.join(aro.FILES)}); "
            f"got {examples(unknown or ['nothing'])}"
        )
    out = _document(split)
    extra: dict[str, Any] = {}
    for bench in (b for b in aro.FILES if b in data):
        items = aro.read_file(Path(root) / aro.FILES[bench], bench)
        ids = [str(i) for i in range(len(items))]
        entries = as_object(data[bench], path, f"benchmark {bench!r}")
        pos, neg = _pair_scores(entries, ids, path, bench)
        ok = pair_correct(pos, neg)
        groups = np.asarray([item["category"] for item in items])  # the official grouping
        if bench == "aro_relation":
            keep, dropped = aro_relation_groups(ok, groups)
            extra[bench] = {"dropped_symmetric": dropped}
        else:
            keep, small = aro_attribution_groups(groups, aro.MIN_ATTRIBUTE_PAIR_COUNT)
            extra[bench] = {"dropped_small_pairs": small}
        if not keep.any():
            raise MatchbenchError(f"{path}: {bench}: no item left after the official filters")
        out["metrics"][bench] = macro_summary(ok[keep], groups[keep], n_boot, seed)
        out["per_category"][bench] = per_category(ok[keep], groups[keep])
    out["extra"] = extra
    return out
