"""The config loader keeps the README's promises: every mistake is one clear error that names it.

Errors name the file and the key path and suggest the close key; defaults are filled from the
schema; the CLI turns a bad config into one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from matchbench.cli import main
from matchbench.config import load_config, resolve, schema
from matchbench.data import get_family
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "configs" / "tiny.yaml"


@pytest.fixture
def raw() -> dict[str, Any]:
    return yaml.safe_load(TINY.read_text())


def write(tmp_path: Path, cfg: Any, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False))
    return p


def error_of(cfg: Any, source: str = "cfg.yaml") -> str:
    with pytest.raises(MatchbenchError) as e:
        resolve(cfg, source)
    return str(e.value)


# --------------------------------------------------------------------------- unknown keys


def test_unknown_nested_key_names_path_and_suggests_close_key(raw):
    raw["tracks"]["ssl"]["train"]["epoch"] = 3
    msg = error_of(raw)
    assert msg.startswith("cfg.yaml:")
    assert "tracks.ssl.train" in msg
    assert "unknown key 'epoch'" in msg
    assert "did you mean 'epochs'" in msg


@pytest.mark.parametrize(
    ("where", "key", "close"),
    [
        ((), "seeed", "seed"),
        (("backbones", "resnet-mini"), "wieghts_url", "weights_url"),
        (("datasets", "miniworld"), "famly", "family"),
        (("extract",), "batchsize", "batch_size"),
        (("tracks", "ssl", "mine"), "treshold", "threshold"),
    ],
)
def test_unknown_key_anywhere_suggests_close_key(raw, where, key, close):
    node = raw
    for part in where:
        node = node.setdefault(part, {})
    node[key] = 1
    msg = error_of(raw)
    assert (".".join(where) or "(top level)") in msg
    assert f"unknown key {key!r}" in msg
    assert f"did you mean {close!r}" in msg


def test_unknown_key_without_close_match_lists_allowed_keys(raw):
    raw["extract"]["zzz"] = 1
    msg = error_of(raw)
    assert "extract: unknown key 'zzz'" in msg
    assert "did you mean" not in msg
    allowed = sorted(schema()["properties"]["extract"]["properties"])
    assert f"allowed keys: {', '.join(allowed)}" in msg


# --------------------------------------------------------------------------- wrong types and values


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            ("tracks", "ssl", "train", "epochs"),
            "ten",
            "tracks.ssl.train.epochs: 'ten' is not of type 'integer'",
        ),
        (
            ("backbones", "resnet-mini", "image_size"),
            "big",
            "backbones.resnet-mini.image_size: 'big'",
        ),
        (("extract", "batch_size"), 0, "extract.batch_size: 0 is less than the minimum of 1"),
        (("device",), "gpu", "device: 'gpu' is not one of ['auto', 'cpu', 'cuda']"),
        (("tracks", "ssl", "mine", "threshold"), 1.5, "tracks.ssl.mine.threshold: 1.5"),
        (("backbones", "resnet-mini", "source"), "torchvision", "backbones.resnet-mini.source"),
    ],
)
def test_wrong_type_or_value_names_the_key_path(raw, path, value, expected):
    node = raw
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    assert expected in error_of(raw)


def test_missing_required_key_is_named(raw):
    del raw["backbones"]["resnet-mini"]["arch"]
    msg = error_of(raw)
    assert "backbones.resnet-mini" in msg
    assert "'arch' is a required property" in msg


def test_top_level_must_be_a_mapping():
    assert "expected a mapping at the top level, got list" in error_of([1, 2])


# --------------------------------------------------------------------------- defaults


def _defaults(sub: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path under fixed properties whose schema gives a default."""
    out = []
    for key, prop in sub.get("properties", {}).items():
        if "default" in prop:
            out.append((*prefix, key))
        out += _defaults(prop, (*prefix, key))
    return out


def _get(cfg: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        cfg = cfg[part]
    return cfg


def test_defaults_are_filled_everywhere(raw):
    before = copy.deepcopy(raw)
    cfg = resolve(raw)
    assert raw == before, "resolve must not modify its input"
    # Every key with a schema default exists: top level, paths, extract, tracks.ssl.* ...
    for path in _defaults(schema()):
        _get(cfg, path)
    # ... and in each named backbone and dataset (their additionalProperties schemas).
    props = schema()["properties"]
    for path in _defaults(props["backbones"]["additionalProperties"]):
        _get(cfg["backbones"]["resnet-mini"], path)
    for path in _defaults(props["datasets"]["additionalProperties"]):
        _get(cfg["datasets"]["miniworld"], path)
    assert cfg["datasets"]["miniworld"]["options"]["image_size"] == 32
    paths = {
        "data": "data/tiny",
        "results": "results/{run}",
        "reports": "reports",
        "logs": "logs/{run}",
    }
    assert cfg["paths"] == paths
    # Each run its own results and logs: "{run}" is the run's name.
    layout = Layout.of(cfg)
    assert (layout.results, layout.logs, layout.data) == (f"results/{cfg['run']}", f"logs/{cfg['run']}", "data/tiny")  # fmt: skip
    assert layout.log("extract", "d", "m") == f"logs/{cfg['run']}/extract/d/m.log"
    assert cfg["backbones"]["resnet-mini"]["pretrained"] is False
    assert cfg["backbones"]["resnet-mini"]["weights_url"] is None
    assert cfg["backbones"]["resnet-mini"]["kwargs"] == {}
    assert cfg["extract"]["workers"] == "auto" and cfg["extract"]["precision"] == "auto"
    train = cfg["tracks"]["ssl"]["train"]
    assert train["lr"] == 0.002 and train["queue"] == 0 and train["split"] == "train"
    assert cfg["tracks"]["ssl"]["enabled"] is True and cfg["tracks"]["ssl"]["sampler"] == "ssl"


def test_given_values_win_over_defaults(raw):
    cfg = resolve(raw)
    assert cfg["threads"] == 1 and cfg["device"] == "cpu"
    assert cfg["tracks"]["ssl"]["train"]["epochs"] == 2
    assert cfg["tracks"]["ssl"]["mine"] == {
        "k": 3,
        "threshold": 0.5,
        "split": "train",
        "thresholds": [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95],
    }


def test_defaults_are_not_shared_between_configs(raw):
    a, b = resolve(copy.deepcopy(raw)), resolve(copy.deepcopy(raw))
    a["tracks"]["ssl"]["mine"]["thresholds"].append(0.99)
    assert 0.99 not in b["tracks"]["ssl"]["mine"]["thresholds"]
    assert (
        0.99
        not in schema()["properties"]["tracks"]["properties"]["ssl"]["properties"]["mine"][
            "properties"
        ]["thresholds"]["default"]
    )


@pytest.mark.parametrize("path", [*sorted((ROOT / "config").glob("*.yaml")), TINY])
def test_shipped_configs_load(path):
    cfg = load_config(path)
    for name, spec in cfg["datasets"].items():  # every family's defaults filled in
        for key, prop in get_family(spec["family"]).options_schema["properties"].items():
            assert key in spec["options"] or "default" not in prop, (name, key)


# --------------------------------------------------------------------------- dataset options


def test_family_option_defaults_are_filled_in(raw):
    cfg = resolve(raw)
    mini = cfg["datasets"]["miniworld"]["options"]
    assert mini["image_size"] == 32  # given
    assert mini["max_clutter"] == 3 and mini["gradient"] is True  # the family's defaults
    assert mini["textures"] == ["solid", "stripes", "checker", "dots"]
    assert "progress" not in mini  # declared without a default
    spair = cfg["datasets"]["mini-spair"]["options"]
    assert spair["pairs"] == {"train": 12, "val": 0, "test": 9}  # given whole, not merged
    assert spair["rotation"] == 30.0 and spair["kps_tolerance"] == 2.0 and spair["mark"] is True
    raw["datasets"]["miniworld"]["options"]["per_class"] = {"train": 4}
    # a split left out has no images, as before: nested counts get no default
    assert resolve(raw)["datasets"]["miniworld"]["options"]["per_class"] == {"train": 4}


@pytest.mark.parametrize(
    ("dataset", "option", "value", "expected"),
    [
        ("miniworld", "per_clas", {"train": 4}, "datasets.miniworld.options: unknown key "
         "'per_clas' (did you mean 'per_class'?)"),
        ("miniworld", "gradient", "no", "datasets.miniworld.options.gradient: 'no' is not of "
         "type 'boolean'"),
        ("miniworld", "per_class", {"train": -3}, "datasets.miniworld.options.per_class.train: "
         "-3 is less than the minimum of 0"),
        ("miniworld", "per_class", {"trian": 3}, "datasets.miniworld.options.per_class: unknown "
         "key 'trian' (did you mean 'train'?)"),
        ("miniworld", "image_size", "big", "datasets.miniworld.options.image_size: 'big' is not "
         "of type 'integer'"),
        ("miniworld", "image_size", 0, "datasets.miniworld.options.image_size: 0 is less than "
         "the minimum of 8"),
        ("miniworld", "image_size", [32, 32], "datasets.miniworld.options.image_size: [32, 32] "
         "is not of type 'integer'"),
        ("miniworld", "categories", ["triangle", "triangel"], "datasets.miniworld.options."
         "categories.1: 'triangel' is not one of"),
        ("miniworld", "textures", ["dots", "dots"], "datasets.miniworld.options.textures: "
         "['dots', 'dots'] has non-unique elements"),
        ("mini-spair", "rotation", 120, "datasets.mini-spair.options.rotation: 120 is greater "
         "than the maximum of 90"),
        ("mini-spair", "image_size", [48], "datasets.mini-spair.options.image_size: [48] is too "
         "short"),
        ("mini-spair", "kps_tolerance", -1, "datasets.mini-spair.options.kps_tolerance: -1 is "
         "less than the minimum of 0"),
        ("mini-spair", "rotaton", 10, "datasets.mini-spair.options: unknown key 'rotaton' (did "
         "you mean 'rotation'?)"),
    ],
)  # fmt: skip
def test_bad_dataset_option_names_its_key(raw, dataset, option, value, expected):
    raw["datasets"][dataset]["options"][option] = value
    assert expected in error_of(raw)


def test_unknown_category_suggests_the_close_one(raw):
    raw["datasets"]["miniworld"]["options"]["categories"] = ["triangel"]
    assert "did you mean triangle" in error_of(raw)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"family": "cifar10", "options": {"val_fraction": 1}}, "options.val_fraction: 1 is "
         "greater than or equal to the maximum of 1"),
        ({"family": "stl10", "options": {"unlabeled": "no"}}, "options.unlabeled: 'no' is not "
         "of type 'boolean'"),
        ({"family": "imagefolder", "options": {"root": 3}}, "options.root: 3 is not of type "
         "'string'"),
        ({"family": "imagefolder", "options": {"rot": "x"}}, "unknown key 'rot' (did you mean "
         "'root'?)"),
        ({"family": "spair71k", "options": {"mirror": ""}}, "options.mirror: '' should be "
         "non-empty"),
        ({"family": "pfpascal", "options": {"checksums": {"x.zip": "md5:zz"}}},
         "options.checksums.x.zip: 'md5:zz' does not match"),
        ({"family": "ap10k", "options": {"kps_tolerance": "2"}}, "options.kps_tolerance: '2' is "
         "not of type 'number'"),
        ({"family": "ap10k", "options": {"mirror": "x"}}, "unknown key 'mirror'"),
        ({"family": "miniwrld"}, "datasets.extra.family: unknown dataset family 'miniwrld'; did "
         "you mean miniworld"),
    ],
)  # fmt: skip
def test_every_family_checks_its_options(raw, spec, expected):
    raw["datasets"]["extra"] = spec
    msg = error_of(raw)
    assert expected in msg
    assert "datasets.extra." in msg


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"family": "miniworld-ilias", "options": {"object_scale": [0.3, 0.1]}},
         "options.object_scale: [0.3, 0.1] is not a [min, max] range (min > max)"),
        ({"family": "miniworld-ilias", "options": {"clutter": [4, 2]}},
         "options.clutter: [4, 2] is not a [min, max] range"),
        ({"family": "miniworld-cir", "options": {"objects": [3, 1]}},
         "option objects = [3, 1], expected [min, max] with 1 <= min <= max <= 3"),
        ({"family": "miniworld-vl", "options": {"objects": [2, 1]}},
         "option objects = [2, 1], expected [min, max]"),
        ({"family": "miniworld-spair", "options": {"image_size": [128, 64]}},
         "option image_size = [128, 64], expected [min, max] side in pixels"),
    ],
)  # fmt: skip
def test_what_a_schema_cannot_say_fails_when_the_config_loads(raw, spec, expected):
    """min <= max and the like are the family's own checks; they run at config load (so at
    `snakemake -n`), not first in the download job."""
    raw["datasets"]["extra"] = spec
    msg = error_of(raw)
    assert msg.startswith("cfg.yaml: dataset extra: ") and expected in msg and "\n" not in msg
    spec["options"] = {}
    resolve(raw, "cfg.yaml")  # the family's defaults pass its own check


def test_cli_bad_dataset_option_is_one_line_per_problem(tmp_path, raw, capsys):
    raw["datasets"]["miniworld"]["options"] |= {"per_clas": {"train": 4}, "gradient": "no"}
    p = write(tmp_path, raw)
    code, lines = run_cli(capsys, *EXTRACT, "--config", str(p))
    assert code == 2
    assert lines[0] == f"matchbench extract: error: {p}: invalid config:"
    assert lines[1] == "  datasets.miniworld.options: unknown key 'per_clas' (did you mean " + (
        "'per_class'?); allowed keys: categories, gradient, image_size, instances_per_class, "
        "max_clutter, per_class, progress, seed, textures"
    )
    assert lines[2] == "  datasets.miniworld.options.gradient: 'no' is not of type 'boolean'"


# --------------------------------------------------------------------------- references


def test_track_naming_unknown_backbone(raw):
    raw["tracks"]["ssl"]["backbones"] = ["resnet-mni"]
    msg = error_of(raw)
    assert (
        "tracks.ssl.backbones: 'resnet-mni' is not in backbones (resnet-mini, vit-tiny, clip-mini)"
        in msg
    )
    assert "did you mean resnet-mini" in msg


def test_track_naming_unknown_dataset(raw):
    raw["tracks"]["ssl"]["dataset"] = "miniwrld"
    msg = error_of(raw)
    assert (
        "tracks.ssl.dataset: 'miniwrld' is not in datasets (miniworld, mini-spair, mini-vl, mini-cirr, mini-ilias, mini-uned, mini-triplets)"
        in msg
    )


# --------------------------------------------------------------------------- files


def test_invalid_yaml_names_file_and_line(tmp_path):
    p = write(tmp_path, "seed: 0\ndatasets: [1, 2\nbackbones: {}\n")
    with pytest.raises(MatchbenchError) as e:
        load_config(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: not valid YAML")
    assert "line 3" in msg


def test_missing_file(tmp_path):
    with pytest.raises(MatchbenchError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_empty_file(tmp_path):
    with pytest.raises(MatchbenchError, match="expected a mapping at the top level"):
        load_config(write(tmp_path, ""))


def test_error_names_the_file(tmp_path, raw):
    raw["seed"] = -1
    p = write(tmp_path, raw)
    with pytest.raises(MatchbenchError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}: ")
    assert "seed: -1 is less than the minimum of 0" in str(e.value)


# --------------------------------------------------------------------------- through the CLI


def run_cli(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.splitlines()


EXTRACT = ("extract", "--dataset", "miniworld", "--model", "resnet-mini")


def test_cli_missing_config_is_one_line(tmp_path, capsys):
    code, lines = run_cli(capsys, *EXTRACT, "--config", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert lines == [f"matchbench extract: error: {tmp_path / 'nope.yaml'}: config file not found"]


def test_cli_unknown_backbone_reference_is_one_line(tmp_path, raw, capsys):
    raw["tracks"]["ssl"]["backbones"] = ["resnet-mni"]
    code, lines = run_cli(capsys, "mine", "--config", str(write(tmp_path, raw)), "--track", "ssl",
                          "--dataset", "miniworld", "--model", "resnet-mini")  # fmt: skip
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("matchbench mine: error: ")
    assert "did you mean resnet-mini" in lines[0]


def test_cli_unknown_model_is_one_line(tmp_path, raw, capsys):
    raw["paths"] = {"data": str(tmp_path / "data"), "results": str(tmp_path / "results")}
    code, lines = run_cli(capsys, "extract", "--config", str(write(tmp_path, raw)), "--dataset",
                          "miniworld", "--model", "resnet-mni")  # fmt: skip
    assert code == 2
    assert len(lines) == 1
    assert "unknown backbone 'resnet-mni'" in lines[0]
    assert "did you mean resnet-mini" in lines[0]


def test_cli_invalid_config_prints_the_readme_format(tmp_path, raw, capsys):
    """The README's example: a one-line head, then one indented line per schema error."""
    raw["tracks"]["ssl"]["train"]["epoch"] = 3
    raw["seed"] = "zero"
    p = write(tmp_path, raw)
    code, lines = run_cli(capsys, *EXTRACT, "--config", str(p))
    assert code == 2
    assert lines[0] == f"matchbench extract: error: {p}: invalid config:"
    train_keys = schema()["properties"]["tracks"]["properties"]["ssl"]["properties"]["train"]
    assert lines[1:] == [
        "  seed: 'zero' is not of type 'integer'",
        "  tracks.ssl.train: unknown key 'epoch' (did you mean 'epochs'?); allowed keys: "
        + ", ".join(sorted(train_keys["properties"])),
    ]


def test_cli_invalid_yaml_is_one_line(tmp_path, capsys):
    p = write(tmp_path, "seed: 0\ndatasets: [1, 2\nbackbones: {}\n")
    code, lines = run_cli(capsys, *EXTRACT, "--config", str(p))
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"matchbench extract: error: {p}")
    assert "line 3" in lines[0]


def test_families_called_directly_check_the_same_schema(tmp_path):
    """A family's own download/prepare read their options through the same schema."""
    mini = get_family("miniworld")
    with pytest.raises(MatchbenchError, match=r"^dataset miniworld: options: unknown key 'per_c"):
        mini.download(tmp_path / "raw", {"per_clas": {"train": 1}})
    with pytest.raises(MatchbenchError, match="options.categories.0: 'circle' is not one of"):
        mini.download(tmp_path / "raw", {"categories": ["circle"]})
    assert not (tmp_path / "raw").exists()
    spair = get_family("miniworld-spair")
    with pytest.raises(MatchbenchError, match="options.scale.0: 0 is less than or equal to"):
        spair.download(tmp_path / "raw", {"scale": [0, 0.5]})
    # what a schema cannot say is checked before anything is written
    with pytest.raises(MatchbenchError, match=r"option image_size = \[100, 50\]"):
        spair.download(tmp_path / "raw", {"image_size": [100, 50]})
    assert not (tmp_path / "raw").exists()


def test_docs_list_each_familys_options():
    """docs/datasets.md names exactly the options each family's schema declares."""
    import re

    text = (ROOT / "docs" / "datasets.md").read_text()
    listed: dict[str, set[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`[a-z0-9-]+`", cells[0]):
            listed[cells[0].strip("`")] = set(re.findall(r"`([a-z_]+)`", cells[2]))
    generator = text[text.index("| option | default | |") :]
    generator = generator[: generator.index("\n\n")]
    for line in generator.splitlines()[2:]:
        listed["miniworld-spair"] |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    for family in ("miniworld", "cifar10", "stl10", "imagefolder", "spair71k", "pfpascal",
                   "ap10k", "miniworld-spair"):  # fmt: skip
        assert listed[family] == set(get_family(family).options_schema["properties"]), family
