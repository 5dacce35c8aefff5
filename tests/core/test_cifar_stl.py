"""CIFAR-10 and STL-10: tiny archives in the real binary formats, served over real HTTP on
127.0.0.1, through the families' own download (with ``mirror``) and prepare."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from matchbench.data import INDEX_COLUMNS, get_family
from matchbench.data.cifar import Cifar10, Stl10
from matchbench.errors import MatchbenchError

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]  # fmt: skip
# Deliberately not in sorted order: labels in the index must follow the sorted names.
STL_CLASSES = ["truck", "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship"]


def make_targz(path: Path, files: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def mirror_options(http_server, filename: str, checksum: str, **extra) -> dict:
    return {"mirror": http_server.url(""), "checksums": {filename: checksum}, **extra}


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def read_index(out: Path) -> pd.DataFrame:
    df = pd.read_parquet(out / "images.parquet")
    assert list(df.columns) == INDEX_COLUMNS
    assert df["id"].is_unique
    assert {df[c].dtype.kind for c in ("label", "width", "height")} == {"i"}
    return df.set_index("id", drop=False)


def test_families_are_registered():
    assert isinstance(get_family("cifar10"), Cifar10)
    assert isinstance(get_family("stl10"), Stl10)


# --------------------------------------------------------------------------- CIFAR-10


@pytest.fixture
def cifar(http_server, tmp_path):
    """A CIFAR-10 binary archive: 2 records in each train batch, 3 in the test batch."""
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
              "test": rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)}  # fmt: skip
    images["train"][0] = 0
    images["train"][0, 0, :, 0] = 255  # first record: top row red, the rest black
    labels = {"train": np.arange(10) % 10, "test": np.array([9, 0, 3])}

    def records(split: str, rows: range) -> bytes:
        # One label byte, then the red, green and blue 32x32 planes, each row-major.
        return b"".join(
            bytes([labels[split][i]]) + images[split][i].transpose(2, 0, 1).tobytes() for i in rows
        )

    files = {f"cifar-10-batches-bin/data_batch_{b}.bin": records("train", range(2 * b - 2, 2 * b))
             for b in range(1, 6)}  # fmt: skip
    files["cifar-10-batches-bin/test_batch.bin"] = records("test", range(3))
    files["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(CIFAR_CLASSES) + "\n\n").encode()
    checksum = make_targz(http_server.root / "cifar-10-binary.tar.gz", files)
    options = mirror_options(http_server, "cifar-10-binary.tar.gz", checksum)
    return images, labels, options, tmp_path / "raw", tmp_path / "out"


def test_cifar10_download_and_prepare(cifar, http_server):
    images, labels, options, raw, out = cifar
    Cifar10().download(raw, options)
    assert (raw / "MANIFEST.json").is_file()
    assert http_server.count("cifar-10-binary.tar.gz") == 1
    Cifar10().prepare(raw, out, options)

    df = read_index(out)
    assert len(df) == 13
    assert df["split"].value_counts().to_dict() == {"train": 10, "test": 3}
    for split, n in (("train", 10), ("test", 3)):
        for i in range(n):
            row = df.loc[f"{split}-{i:05d}"]
            cls = CIFAR_CLASSES[labels[split][i]]
            assert (row["class"], row["label"]) == (cls, labels[split][i])
            assert row["path"] == f"images/{split}/{cls}/{split}-{i:05d}.png"
            assert (row["width"], row["height"], row["instance"]) == (32, 32, "")
            np.testing.assert_array_equal(read_png(out / row["path"]), images[split][i])
    top_red = read_png(out / df.loc["train-00000", "path"])
    assert top_red[0, :, 0].min() == 255 and top_red[1:].max() == 0 and top_red[..., 1:].max() == 0

    Cifar10().download(raw, options)  # idempotent: the manifest matches, no request
    assert http_server.count("cifar-10-binary.tar.gz") == 1


def test_cifar10_val_split_is_deterministic(cifar):
    _, _, options, raw, out = cifar
    Cifar10().download(raw, options)
    Cifar10().prepare(raw, out, {**options, "val_fraction": 0.3, "seed": 7})
    first = read_index(out)
    Cifar10().prepare(raw, out, {**options, "val_fraction": 0.3, "seed": 7})
    again = read_index(out)
    pd.testing.assert_frame_equal(first, again)
    assert first["split"].value_counts().to_dict() == {"train": 7, "val": 3, "test": 3}
    val = first[first["split"] == "val"]
    assert all(i.startswith("train-") for i in val["id"])  # ids name the official split
    assert all(p.startswith("images/val/") and (out / p).is_file() for p in val["path"])
    assert not (out / "images" / "train" / "x").exists()
    Cifar10().prepare(raw, out, {**options, "val_fraction": 0.3, "seed": 8})
    assert set(read_index(out).query("split == 'val'")["id"]) != set(val["id"])


def test_cifar10_uses_the_published_md5_by_default(cifar):
    _, _, options, raw, _ = cifar
    with pytest.raises(MatchbenchError, match="expected md5:c32a1d4ab5d03f1284b67883e8d87530"):
        Cifar10().download(raw, {"mirror": options["mirror"]})


def test_cifar10_truncated_batch_is_a_clear_error(cifar):
    _, _, options, raw, out = cifar
    Cifar10().download(raw, options)
    batch = raw / "cifar-10-binary/cifar-10-batches-bin/data_batch_3.bin"
    batch.write_bytes(batch.read_bytes()[:-100])
    with pytest.raises(MatchbenchError, match="3073-byte records") as e:
        Cifar10().prepare(raw, out, options)
    assert str(batch) in str(e.value)
    assert not out.exists() or list(out.iterdir()) == []  # nothing half-written


def test_options_are_checked(cifar):
    _, _, options, raw, out = cifar
    with pytest.raises(
        MatchbenchError, match=r"cifar10: options: unknown key 'val_frac' \(did you mean 'val_fr"
    ):
        Cifar10().prepare(raw, out, {"val_frac": 0.1})
    with pytest.raises(
        MatchbenchError, match=r"options.val_fraction: 1.5 is greater than or equal"
    ):
        Cifar10().prepare(raw, out, {"val_fraction": 1.5})
    with pytest.raises(MatchbenchError, match="unknown key 'unlabeled'"):
        Cifar10().prepare(raw, out, {"unlabeled": True})  # an STL-10 option only
    with pytest.raises(MatchbenchError, match="options.seed: -1 is less than the minimum of 0"):
        Cifar10().prepare(raw, out, {"seed": -1})
    with pytest.raises(MatchbenchError, match="options.checksums.a.bin: 'sha1:00' does not match"):
        Cifar10().download(raw, {"checksums": {"a.bin": "sha1:00"}})
    with pytest.raises(MatchbenchError, match="options.unlabeled: 'yes' is not of type 'boolean'"):
        Stl10().prepare(raw, out, {"unlabeled": "yes"})
    with pytest.raises(MatchbenchError, match="run `matchbench download`"):
        Cifar10().prepare(raw, out, {})


# --------------------------------------------------------------------------- STL-10


def stl_bytes(images: np.ndarray) -> bytes:
    # Each channel plane is column-major (Fortran order), as the authors' MATLAB wrote it.
    return b"".join(img[:, :, c].flatten(order="F").tobytes() for img in images for c in range(3))


@pytest.fixture
def stl(http_server, tmp_path):
    rng = np.random.default_rng(1)
    images = {s: rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
              for s, n in (("train", 4), ("test", 3), ("unlabeled", 2))}  # fmt: skip
    images["train"][0] = 0
    images["train"][0, 0, :, 1] = 200  # first image: top row green; a transpose makes it a column
    labels = {"train": np.array([1, 10, 4, 1]), "test": np.array([2, 3, 10])}  # 1-based
    files = {f"stl10_binary/{s}_X.bin": stl_bytes(x) for s, x in images.items()}
    files.update(
        {f"stl10_binary/{s}_y.bin": y.astype(np.uint8).tobytes() for s, y in labels.items()}
    )
    files["stl10_binary/class_names.txt"] = "\n".join(STL_CLASSES).encode()
    checksum = make_targz(http_server.root / "stl10_binary.tar.gz", files)
    options = mirror_options(http_server, "stl10_binary.tar.gz", checksum)
    return images, labels, options, tmp_path / "raw", tmp_path / "out"


def test_stl10_download_and_prepare(stl):
    images, labels, options, raw, out = stl
    Stl10().download(raw, options)
    Stl10().prepare(raw, out, options)
    df = read_index(out)
    assert df["split"].value_counts().to_dict() == {"train": 4, "test": 3}  # no unlabelled
    for split in ("train", "test"):
        for i, y in enumerate(labels[split]):
            row = df.loc[f"{split}-{i:05d}"]
            cls = STL_CLASSES[y - 1]
            assert (row["class"], row["label"]) == (cls, sorted(STL_CLASSES).index(cls))
            assert (row["width"], row["height"]) == (96, 96)
            np.testing.assert_array_equal(read_png(out / row["path"]), images[split][i])
    top = read_png(out / df.loc["train-00000", "path"])
    assert top[0, :, 1].min() == 200 and top[1:, :, 1].max() == 0  # a row, not a column
    assert df.loc["train-00000", "class"] == "truck" and df.loc["train-00000", "label"] == 9


def test_stl10_unlabeled_option(stl):
    images, _, options, raw, out = stl
    Stl10().download(raw, options)
    Stl10().prepare(raw, out, {**options, "unlabeled": True})
    df = read_index(out)
    unl = df[df["split"] == "unlabeled"]
    assert list(unl["id"]) == ["unlabeled-00000", "unlabeled-00001"]
    assert set(unl["label"]) == {-1} and set(unl["class"]) == {""}
    assert list(unl["path"]) == [f"images/unlabeled/{i}.png" for i in unl["id"]]
    for i, p in enumerate(unl["path"]):
        np.testing.assert_array_equal(read_png(out / p), images["unlabeled"][i])


def test_stl10_truncated_images_and_label_mismatch(stl):
    _, _, options, raw, out = stl
    Stl10().download(raw, options)
    root = raw / "stl10_binary/stl10_binary"
    y = root / "test_y.bin"
    y.write_bytes(y.read_bytes()[:-1])
    with pytest.raises(MatchbenchError, match="2 labels for 3 images") as e:
        Stl10().prepare(raw, out, {})
    assert str(y) in str(e.value)
    x = root / "train_X.bin"
    x.write_bytes(x.read_bytes()[:-5])
    with pytest.raises(MatchbenchError, match="27648-byte records") as e:
        Stl10().prepare(raw, out, {})
    assert str(x) in str(e.value)
