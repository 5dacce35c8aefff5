"""Distractor shards: webdataset-style tars of ``<key>.jpg`` members, read in place.

ILIAS ships its YFCC100M distractors as uncompressed tars of 100,000 images
(``<portal>/yfcc100m/*.tar``, listed with their sha256 in ``checksums.txt``, the format of
``sha256sum``: ``<hex>  <url>``, as ``download/download_ilias.sh`` reads it). The official
extraction (``feature_extraction/src/datasets/generators.py``) streams them with webdataset,
keeps the samples with a ``jpg`` member and names an image ``<shard basename>/<key>``
(``merge_id_shard``): ``yfcc100m_00000.tar/<key>``.

Here a shard is indexed once by one sequential pass over its headers (:func:`members`: each
``.jpg`` member's key, data offset and size) and :class:`ShardImages` reads any member by
seeking to it, so DataLoader workers share a shard without unpacking it. A key is
webdataset's: the member's path up to the first dot of its file name, the rest its extension
(lowercased), so ``a/123.jpg`` is key ``a/123``, extension ``jpg``.

The module imports no torch (the images' tensors import it when first read): a shard job
(``matchbench download --shard``: checksums, :func:`members`) costs seconds, and importing
torch alone would be half of them.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from matchbench.data.download import _inside
from matchbench.errors import MatchbenchError
from matchbench.io import sha256_file

if TYPE_CHECKING:
    import torch

BLOCK = 512
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Member:
    """One image of a shard: its webdataset key and where its bytes are."""

    key: str
    offset_data: int
    size: int


# --------------------------------------------------------------------------- checksums


def read_checksums(path: str | os.PathLike[str]) -> dict[str, str]:
    """``checksums.txt`` as {file name: lowercase sha256}: one ``<sha256>  <url or name>``
    a line (``sha256sum``'s format, ``*`` before a binary name allowed); the file name is
    the last part of the URL's path. Blank lines and ``#`` comments are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise MatchbenchError(f"{path}: cannot read the checksums ({e.strerror})") from None
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2 or not _SHA256.fullmatch(fields[0]):
            raise MatchbenchError(
                f"{path}:{lineno}: expected '<sha256, 64 hex digits>  <url or file name>', "
                f"got {line!r}"
            )
        where = fields[1].lstrip("*")
        name = urllib.parse.unquote(urllib.parse.urlsplit(where).path.rsplit("/", 1)[-1])
        digest = fields[0].lower()
        if not name:
            raise MatchbenchError(f"{path}:{lineno}: no file name in {where!r}")
        if out.get(name, digest) != digest:
            raise MatchbenchError(f"{path}:{lineno}: a second, different checksum for {name}")
        out[name] = digest
    return out


def verify(
    path: str | os.PathLike[str], checksums: Mapping[str, str], name: str | None = None
) -> str:
    """Check ``path`` against its listed sha256 (listed as ``name``, by default its file
    name); returns the digest. A file not listed, or a different digest, is an error."""
    path = Path(path)
    name = name or path.name
    if name not in checksums:
        raise MatchbenchError(f"{path}: no checksum listed for {name}")
    got, want = sha256_file(path), checksums[name].lower()
    if got != want:
        raise MatchbenchError(
            f"{path.parent / name}: sha256 mismatch: expected {want}, got {got} (a corrupt or "
            "changed file; delete it and download it again)"
        )
    return got


# --------------------------------------------------------------------------- the index


def _corrupt(path: Path, why: str) -> MatchbenchError:
    return MatchbenchError(f"{path}: truncated or corrupt tar shard ({why})")


def split_key(name: str) -> tuple[str, str]:
    """webdataset's (key, extension) of a member name: the extension starts at the first dot
    of the file name (``a/b.c.jpg`` is key ``a/b``, extension ``c.jpg``)."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem:
        return name, ""
    return f"{folder}/{stem}" if folder else stem, ext.lower()


def members(path: str | os.PathLike[str]) -> list[Member]:
    """The ``.jpg`` members of an uncompressed shard, in tar order, by one pass over its
    headers. Refused: a member whose path is absolute or climbs out with ``..`` (as
    ``matchbench.data.download`` refuses it when extracting), a link or device, a key twice.
    Directory entries and members of other extensions are skipped. A shard cut short (a
    member's data past the end, no end-of-archive block) is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MatchbenchError(f"{path}: shard not found")
    size = path.stat().st_size
    out: list[Member] = []
    seen: set[str] = set()
    try:
        # "r:" reads plain tars only: a member is read by seeking to its bytes.
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if _inside(m.name) is None:
                    raise MatchbenchError(
                        f"{path}: refusing member {m.name!r}: absolute path or '..' leaves the shard"
                    )
                if m.isdir():
                    continue
                if not m.isreg():
                    raise MatchbenchError(
                        f"{path}: refusing member {m.name!r}: not a regular file (link or device)"
                    )
                if m.offset_data + m.size > size:
                    raise _corrupt(path, f"member {m.name!r} ends past the end of the file")
                key, ext = split_key(m.name)
                if ext != "jpg":
                    continue
                if key in seen:
                    raise MatchbenchError(f"{path}: key {key!r} appears twice")
                seen.add(key)
                out.append(Member(key, m.offset_data, m.size))
            end = tar.offset
    except tarfile.TarError as e:
        raise _corrupt(path, str(e)) from None
    # tarfile takes a file cut at a member boundary, or inside a header, for a shorter
    # archive: the end-of-archive block must be there.
    with open(path, "rb") as f:
        f.seek(end)
        if f.read(BLOCK) != bytes(BLOCK):
            raise _corrupt(path, f"no end-of-archive block at byte {end}")
    return out


def ids(name: str, members: Iterable[Member]) -> list[str]:
    """The images' ILIAS ids, ``<name>.tar/<key>`` (``merge_id_shard``)."""
    shard = name if name.endswith(".tar") else f"{name}.tar"
    return [f"{shard}/{m.key}" for m in members]


# --------------------------------------------------------------------------- reading


class ShardImages:
    """The images of one shard as uint8 (3, size, size) tensors, by seeking to each member
    (:func:`matchbench.images.to_uint8_tensor`: shorter side resized, centre crop).

    A map-style dataset (``__len__`` and ``__getitem__``, all torch's DataLoader asks; not a
    subclass of torch's ``Dataset``, so that importing this module imports no torch).
    Picklable for DataLoader workers: the file is opened lazily, once per process (a handle
    inherited through fork shares its offset with the parent, so it is never reused)."""

    def __init__(self, path: str | os.PathLike[str], members: list[Member], size: int) -> None:
        self.path, self.members, self.size = Path(path), list(members), size
        self._file: IO[bytes] | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.members)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state

    def _handle(self) -> IO[bytes]:
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = open(self.path, "rb"), os.getpid()  # noqa: SIM115
        return self._file

    def read(self, i: int) -> bytes:
        """The raw bytes of member ``i``."""
        m = self.members[i]
        f = self._handle()
        f.seek(m.offset_data)
        data = f.read(m.size)
        if len(data) != m.size:
            raise MatchbenchError(f"{self.path.name}/{m.key}: cut short in {self.path}")
        return data

    def __getitem__(self, i: int) -> torch.Tensor:
        from matchbench.images import to_uint8_tensor

        m = self.members[i]
        try:
            with Image.open(io.BytesIO(self.read(i))) as im:
                img = im.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise MatchbenchError(
                f"{self.path.name}/{m.key}: not a readable image ({e}) in {self.path}"
            ) from None
        return to_uint8_tensor(img, self.size)

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid = None, None

    def __del__(self) -> None:
        self.close()
