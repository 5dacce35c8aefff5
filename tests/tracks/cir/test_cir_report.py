"""The cir section's note on the two-stage recipe: its gain, its interval, its paired tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from matchbench.per_query import PerQuery
from matchbench.report import paired
from matchbench.report.gather import MetricsDoc
from matchbench.tracks.cir.report import gain_note


def _doc(tmp_path: Path, method: str, hits: np.ndarray, ids: list[str]) -> MetricsDoc:
    model = f"clip@{method}"
    pq = PerQuery()
    entry = pq.summarise("recall@1", ids, hits, 500, 0)
    path = pq.write(tmp_path / f"{model}.json")
    doc = {"task": "cir", "dataset": "cirr", "model": model, "metrics": {"recall@1": entry}}
    doc["artifacts"] = {"per_query": path}
    return MetricsDoc(tmp_path / f"{model}.json", "cir", "cirr", model, doc)


def test_the_note_gives_the_paired_test_against_each_baseline(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = [f"q{i:03d}" for i in range(150)]
    image = (rng.random(150) < 0.2).astype(float)
    two = image.copy()
    two[np.flatnonzero(image == 0)[:15]] = 1  # 15 more queries solved, none lost
    text = (rng.random(150) < 0.25).astype(float)
    docs = [
        _doc(tmp_path, "image", image, ids),
        _doc(tmp_path, "text", text, ids),
        _doc(tmp_path, "pic2word", image, ids),
        _doc(tmp_path, "two-stage", two, ids),
    ]
    values = paired.read_values(docs)
    note = gain_note("cirr", "cirr", docs, values, n_boot=500, seed=0)
    assert note is not None and note.startswith("cirr (clip): two-stage recall@1 ")
    assert "+10.0 points over the Pic2Word-style mapping" in note
    assert "against image only +10.0 points (95% CI +" in note  # the lower end is above 0
    after = note.split("paired over the same queries")[1]
    p_image = float(after.split("p = ")[1].split(")")[0])
    assert p_image < 0.05
    assert "text only" in after
    # Without draws (report.paired_bootstrap: 0) the note keeps only the unpaired comparison.
    assert "paired" not in gain_note("cirr", "cirr", docs, values, n_boot=0)
