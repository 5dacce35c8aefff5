"""Every path of the data, results and reports trees, built in one place.

The rules (``workflow/rules``), the stages, the tracks' target lists and ``dvc-export`` all ask
this module where a file lives; nothing else spells a path out. Arguments may be Snakemake
wildcard patterns (``"{dataset}"``): every method is plain string formatting, so
``layout.metrics("<task>", "{dataset}", "{model}")`` is a rule's output pattern.

::

    <data>/raw/<dataset>/MANIFEST.json       download (the raw files beside it)
    <data>/<dataset>/images.parquet          prepare: the common image index
    <data>/<dataset>/<table>.parquet         prepare: a family's task tables (pairs, ...)
    <data>/weights/<backbone>.safetensors    weights
    <results>/features/<dataset>/<model>/    extract: features.npy, ids.txt, meta.json
    <results>/dense/<dataset>/<model>/       extract --dense: maps.npy, ids.txt, meta.json
    <results>/pairs/<dataset>/<model>/       mine: pairs.parquet, stats.json
    <results>/models/<recipe>/<dataset>/<backbone>/   finetune: model.safetensors,
                                             train_log.csv, config.json
    <results>/metrics/<task>/<dataset>/<model>.json   evaluate (+ <model>.<side> files)
    <results>/summary/<task>/<dataset>/<model>.json   evaluate: headline metrics (DVC's metrics)
    <reports>/<run>/                         report
    <logs>/<stage>/.../<name>.log            each job's log
    <logs>/benchmarks/<stage>/.../<name>.tsv each job's time and memory (Snakemake's)

The config's ``paths`` place the trees; ``{run}`` in one stands for the run's name. By default
``results/<run>`` and ``logs/<run>``: each config its own, so the tiny test config never mixes
with the demo; ``data`` is shared by name, ``reports`` holds ``<run>/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_FILES = ("model.safetensors", "train_log.csv", "config.json")
FEATURE_FILES = ("features.npy", "ids.txt", "meta.json")
DENSE_FILES = ("maps.npy", "ids.txt", "meta.json")
MINED_FILES = ("pairs.parquet", "stats.json")


def split_model(name: str) -> tuple[str, str | None]:
    """``"<backbone>+<recipe>"`` → ``("<backbone>", "<recipe>")``; a bare backbone → recipe None."""
    backbone, _, recipe = name.partition("+")
    return backbone, (recipe or None)


def backbone_of(name: str) -> str:
    """The backbone of any model name a task evaluates: ``<backbone>[+<recipe>][@<method>]``
    (a task may suffix ``@<method>``: the cir track's methods on a frozen model)."""
    return split_model(name.partition("@")[0])[0]


PER_QUERY = "per_query.parquet"  # the side file of every evaluated document (matchbench.per_query)


@dataclass(frozen=True)
class Layout:
    data: str = "data"
    results: str = "results"
    reports: str = "reports"
    logs: str = "logs"

    @classmethod
    def of(cls, cfg: dict[str, Any]) -> Layout:
        """The layout of a resolved config: its ``paths``, ``{run}`` replaced by its run."""
        given = cfg["paths"]
        run = cfg.get("run", "")
        return cls(
            **{
                k: given[k].replace("{run}", run) if k in given else getattr(cls, k)
                for k in ("data", "results", "reports", "logs")
            }
        )

    # --- data ---------------------------------------------------------------------------
    def raw(self, dataset: str) -> str:
        return f"{self.data}/raw/{dataset}"

    def manifest(self, dataset: str) -> str:
        return f"{self.raw(dataset)}/MANIFEST.json"

    def dataset(self, dataset: str) -> str:
        return f"{self.data}/{dataset}"

    def index(self, dataset: str) -> str:
        return self.table(dataset, "images")

    def table(self, dataset: str, name: str, suffix: str = "parquet") -> str:
        return f"{self.dataset(dataset)}/{name}.{suffix}"

    def weights(self, backbone: str) -> str:
        return f"{self.data}/weights/{backbone}.safetensors"

    # --- results ------------------------------------------------------------------------
    def features(self, dataset: str, model: str, file: str | None = None) -> str:
        return _join(f"{self.results}/features/{dataset}/{model}", file)

    def dense(self, dataset: str, model: str, file: str | None = None) -> str:
        return _join(f"{self.results}/dense/{dataset}/{model}", file)

    def mined(self, dataset: str, model: str, file: str | None = None) -> str:
        return _join(f"{self.results}/pairs/{dataset}/{model}", file)

    def distractors(self, dataset: str, model: str, shard: str, file: str | None = None) -> str:
        """The feature store of one distractor shard (``extract --shard``)."""
        return _join(f"{self.results}/features/{dataset}/{model}/distractors/{shard}", file)

    def shard(self, dataset: str, shard: str) -> str:
        """A distractor shard's tar (``download --shard``), beside the dataset's raw folder."""
        return f"{self.data}/raw/{dataset}.shards/{shard}.tar"

    def ranked(self, dataset: str, model: str, file: str | None = None) -> str:
        """Ranked lists of a retrieval (``matchbench retrieve``)."""
        return _join(f"{self.results}/retrieval/{dataset}/{model}", file)

    def model(self, recipe: str, dataset: str, backbone: str, file: str | None = None) -> str:
        return _join(f"{self.results}/models/{recipe}/{dataset}/{backbone}", file)

    def metrics(self, task: str, dataset: str, model: str, side: str | None = None) -> str:
        stem = f"{self.results}/metrics/{task}/{dataset}/{model}"
        return f"{stem}.{side}" if side else f"{stem}.json"

    def is_metrics(self, path: str) -> bool:
        """Whether ``path`` is a metrics document (not one of its side files)."""
        return path.startswith(f"{self.results}/metrics/") and path.endswith(".json")

    def summary(self, task: str, dataset: str, model: str) -> str:
        """A metrics document's headline metrics, ``{dataset: {model: {metric: value}}}``
        (DVC's metrics files)."""
        return f"{self.results}/summary/{task}/{dataset}/{model}.json"

    def is_summary(self, path: str) -> bool:
        return path.startswith(f"{self.results}/summary/") and path.endswith(".json")

    def model_weights(self, cfg: dict[str, Any], model: str, dataset: str) -> str | None:
        """The weights file ``model`` loads (see docs/contracts.md), or None for random init.

        ``<backbone>+<recipe>`` is the recipe's checkpoint trained on ``dataset``, unless the
        recipe's track says otherwise (``Track.checkpoint``: compose models train on one
        dataset and serve every other); a backbone with ``pretrained: true`` reads the weights
        stage's file, with a path that file.
        """
        backbone, recipe = split_model(model)
        if recipe is not None:
            from matchbench.tracks import find_recipe

            track = find_recipe(recipe)[0]
            if track.checkpoint is not None:
                return str(track.fn("checkpoint")(cfg, model, dataset))
            return self.model(recipe, dataset, backbone, "model.safetensors")
        pretrained = cfg["backbones"][backbone]["pretrained"]
        if pretrained is True:
            return self.weights(backbone)
        if isinstance(pretrained, str):
            return pretrained
        return None

    # --- reports and logs ---------------------------------------------------------------
    def report(self, run: str, file: str | None = None) -> str:
        return _join(f"{self.reports}/{run}", file)

    def log(self, stage: str, *parts: str) -> str:
        return f"{self.logs}/{'/'.join((stage, *parts))}.log"

    def benchmark(self, stage: str, *parts: str) -> str:
        """Snakemake's ``benchmark:`` file of a job (wall time, peak memory)."""
        return f"{self.benchmarks()}/{'/'.join((stage, *parts))}.tsv"

    def benchmarks(self) -> str:
        return f"{self.logs}/benchmarks"


def _join(folder: str, file: str | None) -> str:
    return f"{folder}/{file}" if file else folder


def as_path(path: str | None) -> Path | None:
    return None if path is None else Path(path)
