"""Per-query side files and the paired bootstrap the report compares models with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matchbench import metrics
from matchbench.errors import MatchbenchError
from matchbench.per_query import COLUMNS, PerQuery, read, side_file


def test_recorded_values_summarise_like_the_document_and_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    hits = rng.random(40) < 0.3
    groups = np.repeat(["a", "b"], [10, 30])
    ids = [f"q{i:02d}" for i in range(40)][::-1]
    pq = PerQuery()
    plain = pq.summarise("recall@1", ids, hits, 200, 0)
    macro = pq.macro("avg", ids, hits, groups, 200, 0)
    assert plain == metrics.summarise(hits, 200, 0)
    assert macro == metrics.macro_summary(hits, groups, 200, 0)

    path = pq.write(tmp_path / "m+x@y.json")
    assert Path(path) == tmp_path / "m+x@y.per_query.parquet" == side_file(tmp_path / "m+x@y.json")
    df = read(path)
    assert list(df.columns) == COLUMNS
    assert list(df["metric"].unique()) == ["avg", "recall@1"]  # sorted, then by query
    rec = df[df["metric"] == "recall@1"]
    assert rec["query"].tolist() == sorted(ids)
    assert rec["value"].mean() == pytest.approx(plain["value"])
    avg = df[df["metric"] == "avg"]
    assert avg.groupby("group")["value"].mean().mean() == pytest.approx(macro["value"])
    first = Path(path).read_bytes()
    pq.write(tmp_path / "m+x@y.json")
    assert Path(path).read_bytes() == first  # reruns write the same bytes


def test_extend_prefixes_and_refuses_twice() -> None:
    inner = PerQuery()
    inner.add("map@10", ["a", "b"], [0.5, 1.0])
    outer = PerQuery()
    outer.extend(inner, "circo_")
    assert outer.frame()["metric"].unique().tolist() == ["circo_map@10"]
    with pytest.raises(MatchbenchError, match="recorded twice"):
        outer.extend(inner, "circo_")


@pytest.mark.parametrize(
    ("queries", "values", "match"),
    [(["a", "a"], [1, 0], "repeated"), (["a"], [1, 0], "equal non-empty"), ([], [], "non-empty")],
)
def test_bad_records_are_named(queries: list, values: list, match: str) -> None:
    with pytest.raises(MatchbenchError, match=match):
        PerQuery().add("knn_acc", queries, values)


def test_read_names_the_file_and_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(MatchbenchError, match="not found"):
        read(tmp_path / "none.per_query.parquet")
    bad = tmp_path / "bad.per_query.parquet"
    pd.DataFrame({"metric": ["m"], "query": ["q"], "value": [0.5]}).to_parquet(bad)
    with pytest.raises(
        MatchbenchError, match=r"bad\.per_query\.parquet: missing column\(s\) group"
    ):
        read(bad)
    pd.DataFrame({"metric": ["m"], "query": ["q"], "group": [""], "value": [np.nan]}).to_parquet(
        bad
    )
    with pytest.raises(MatchbenchError, match="finite"):
        read(bad)


def test_paired_bootstrap_sees_a_consistent_small_gain_that_unpaired_intervals_miss() -> None:
    rng = np.random.default_rng(1)
    hard = rng.random(300)  # queries differ a lot in difficulty...
    a = (hard < 0.55).astype(float)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:12]] = 1  # ...and b solves 12 more of them, losing none
    test = metrics.paired_bootstrap(b, a, n_boot=1000, seed=0)
    assert test["delta"] == pytest.approx(12 / 300)
    assert test["ci_low"] > 0 and test["p"] < 0.05 and test["n"] == 300
    ia, ib = metrics.summarise(a, 1000, 0), metrics.summarise(b, 1000, 0)
    assert ib["ci_low"] < ia["ci_high"]  # the two unpaired intervals overlap


def test_paired_bootstrap_of_equal_models_and_of_noise() -> None:
    rng = np.random.default_rng(2)
    a = rng.random(200)
    same = metrics.paired_bootstrap(a, a, n_boot=200, seed=0)
    assert same == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p": 1.0, "n": 200}
    shuffled = rng.permutation(a)
    noise = metrics.paired_bootstrap(a, shuffled, n_boot=500, seed=0)
    assert noise["ci_low"] < 0 < noise["ci_high"] and noise["p"] > 0.05
    assert noise == metrics.paired_bootstrap(a, shuffled, n_boot=500, seed=0)  # seeded


def test_paired_bootstrap_with_groups_takes_the_macro_difference() -> None:
    a = np.array([1, 1, 1, 1, 0, 0], dtype=float)
    b = np.array([0, 0, 0, 0, 0, 1], dtype=float)
    g = np.array(["x", "x", "x", "x", "y", "y"])
    test = metrics.paired_bootstrap(a, b, g, n_boot=300, seed=0)
    assert test["delta"] == pytest.approx((1.0 - 0.0 + 0.0 - 0.5) / 2)
    assert test["delta"] != pytest.approx(a.mean() - b.mean())
    with pytest.raises(MatchbenchError, match="equal non-empty"):
        metrics.paired_bootstrap(a, b[:3])
    with pytest.raises(MatchbenchError, match="finite"):
        metrics.paired_bootstrap(a, b * np.nan)
