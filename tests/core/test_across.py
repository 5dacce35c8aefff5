"""The cross-task view's numbers: normalised scores and rank correlations between columns."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from matchbench.report.across import headline_results, normalised, rank_correlations


def _rows(values: dict[tuple[str, str, str], dict[str, float]]) -> pd.DataFrame:
    rows = [
        {"task": t, "dataset": d, "metric": m, "model": model, "value": v,
         "ci_low": math.nan, "ci_high": math.nan}
        for (t, d, m), by_model in values.items()
        for model, v in by_model.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_only_headline_metrics_of_tracks_enter_and_scores_divide_by_the_best() -> None:
    results = _rows(
        {
            ("ssl", "w", "knn_acc"): {"a": 0.5, "b": 0.25, "c": 0.4},
            ("ssl", "w", "knn_acc_extra"): {"a": 0.9},  # not a headline metric
            ("retrieval", "x", "recall@1"): {"a": 0.3},  # a score benchmark: no track
            ("cir", "q", "map@10"): {"a": 0.0, "b": 0.0},  # everyone at zero: all at the best
        }
    )
    rows = headline_results(results)
    assert sorted(rows["column"].unique()) == ["cir · q · map@10", "ssl · w · knn_acc"]
    grid = normalised(rows)
    assert list(grid.columns) == ["cir · q · map@10", "ssl · w · knn_acc"]
    assert grid.loc["b", "ssl · w · knn_acc"] == pytest.approx(0.5)
    assert grid.loc["a", "cir · q · map@10"] == grid.loc["b", "cir · q · map@10"] == 1.0
    assert math.isnan(grid.loc["c", "cir · q · map@10"])  # not evaluated there


def test_rank_correlation_needs_three_shared_models_and_a_varying_column() -> None:
    grid = pd.DataFrame(
        {
            "x": [0.1, 0.2, 0.3, 0.4],
            "y": [0.4, 0.3, 0.2, 0.1],  # the reverse order
            "z": [0.5, math.nan, math.nan, 0.6],  # two shared models only
            "k": [0.2, 0.2, 0.2, 0.2],  # constant
        },
        index=["a", "b", "c", "d"],
    )
    rho = rank_correlations(grid)
    assert rho.loc["x", "y"] == pytest.approx(-1.0) and rho.loc["y", "x"] == rho.loc["x", "y"]
    assert rho.loc["x", "x"] == 1.0
    assert math.isnan(rho.loc["x", "z"]) and rho.attrs["shared"].loc["x", "z"] == 2
    assert math.isnan(rho.loc["x", "k"]) and rho.attrs["shared"].loc["x", "k"] == 4
