"""The one downloader: fetch files over HTTP(S) or from a local mirror, verify, extract safely.

Every dataset family and the model-weights stage get their files through ``fetch`` or
``download_url``, so resuming, retrying, checksums and archive safety are written once.

- A download streams into ``<dest>.part`` and is renamed to ``dest`` only after its checksum
  verified, so a file at ``dest`` is always complete. A ``.part`` left by an interrupted run is
  resumed with an HTTP ``Range`` request (RFC 9110 section 14); a server that ignores the range
  and answers ``200`` is handled by starting over.
- Checksums are written ``"sha256:<hex>"`` or ``"md5:<hex>"``: several dataset authors (and
  torchvision, which copies them) publish only MD5. MD5 is no defence against a malicious
  mirror, but it does catch truncated and corrupted transfers, which is what it is used for here.
- Archives are checked member by member before anything is written (no absolute paths, no
  ``..``, no links leaving the destination, no device files), extracted into a temporary
  directory and renamed into place, so a refused or failed extraction leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import re
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from matchbench import __version__
from matchbench.errors import MatchbenchError
from matchbench.io import atomic_dir, read_json, sha256_file, write_json

USER_AGENT = f"matchbench/{__version__} (Python urllib)"
CHUNK_BYTES = 1 << 20
# Seconds before the first retry; doubled for each further one. Tests set it to 0.
RETRY_BACKOFF_S = 1.0
RETRYABLE_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
DOWNLOADS_DIR = ".downloads"
MANIFEST_NAME = "MANIFEST.json"
_DIGEST_LENGTHS = {"md5": 32, "sha256": 64}
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
# tarfile's extraction filters (and their error) exist from Python 3.10.12 / 3.11.4 on.
_TAR_FILTER_ERROR: Any = getattr(tarfile, "FilterError", ())
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


# --------------------------------------------------------------------------- checksums


def parse_checksum(checksum: str) -> tuple[str, str]:
    """Split ``"sha256:<hex>"`` / ``"md5:<hex>"`` into (algorithm, lowercase hex digest)."""
    algo, sep, digest = str(checksum).partition(":")
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if (
        not sep
        or algo not in _DIGEST_LENGTHS
        or len(digest) != _DIGEST_LENGTHS[algo]
        or not re.fullmatch(r"[0-9a-f]+", digest)
    ):
        raise MatchbenchError(
            f"checksum {checksum!r}: expected 'sha256:<64 hex digits>' or 'md5:<32 hex digits>'"
        )
    return algo, digest


def file_digest(path: str | os.PathLike[str], algo: str) -> str:
    if algo == "sha256":
        return sha256_file(path)
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- download


class _TransferError(Exception):
    """A failure worth retrying: dropped connection, truncated body, 5xx, timeout."""


def _is_local(url: str) -> bool:
    scheme = urllib.parse.urlsplit(url).scheme
    # A one-letter scheme is a Windows drive letter, not a protocol.
    return scheme in ("", "file") or len(scheme) == 1


def _local_path(url: str) -> Path:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "file":
        return Path(url).expanduser()
    if parts.netloc not in ("", "localhost"):
        raise MatchbenchError(f"{url}: file:// URLs must name a local path (file:///path/to/file)")
    return Path(urllib.request.url2pathname(parts.path))


def _progress_bar(total: int | None, initial: int, desc: str, progress: bool) -> Any:
    from matchbench.progress import bar as progress_bar

    return progress_bar(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        leave=False,
        disable=not progress,
    )


def _copy_local(url: str, part: Path, progress: bool) -> None:
    src = _local_path(url)
    if not src.is_file():
        raise MatchbenchError(f"{url}: no such file (expected a local file or mirror copy)")
    with (
        open(src, "rb") as fin,
        open(part, "wb") as fout,
        _progress_bar(src.stat().st_size, 0, part.name[: -len(".part")], progress) as bar,
    ):
        while block := fin.read(CHUNK_BYTES):
            fout.write(block)
            bar.update(len(block))


def _content_range(value: str | None) -> tuple[int, int, int | None] | None:
    m = _CONTENT_RANGE.fullmatch((value or "").strip())
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


def _unsatisfied_range_total(value: str | None) -> int | None:
    """The size in a 416 answer's ``Content-Range: bytes */<size>``."""
    m = re.fullmatch(r"bytes\s+\*/(\d+)", (value or "").strip())
    return int(m.group(1)) if m else None


def _http_attempt(url: str, part: Path, offset: int, timeout: float, progress: bool) -> None:
    """One request; returns when ``part`` holds the whole body, raises _TransferError to retry."""
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        with e:
            if e.code == 416 and offset:
                # The .part may already be whole (a run died between download and rename).
                if _unsatisfied_range_total(e.headers.get("Content-Range")) == offset:
                    return
                part.unlink(missing_ok=True)
                raise _TransferError("server refused the resume range; starting over") from None
            if e.code in RETRYABLE_HTTP_STATUS:
                raise _TransferError(f"HTTP {e.code} {e.reason}") from None
            raise MatchbenchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _TransferError(f"cannot connect: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:
        raise _TransferError(f"{type(e).__name__}: {e}") from None

    with resp:
        length_header = resp.headers.get("Content-Length", "")
        length = int(length_header) if length_header.isdigit() else None
        if resp.status == 206:
            rng = _content_range(resp.headers.get("Content-Range"))
            if rng is None or rng[0] != offset:
                part.unlink(missing_ok=True)
                raise _TransferError("server sent a different range than asked; starting over")
            mode, expected = "ab", rng[2] if rng[2] is not None else rng[1] + 1
        else:
            # 200: the whole body, whether or not we asked for a range; start over.
            mode, offset = "wb", 0
            expected = length
        written = offset
        desc = part.name[: -len(".part")]
        with open(part, mode) as f, _progress_bar(expected, offset, desc, progress) as bar:
            try:
                while chunk := resp.read(CHUNK_BYTES):
                    f.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as e:
                raise _TransferError(f"connection lost after {written} bytes ({e})") from None
    # http.client returns b"" rather than raising when a Content-Length body is cut short.
    if expected is not None and written < expected:
        raise _TransferError(f"transfer truncated at {written} of {expected} bytes")
    if expected is not None and written > expected:
        part.unlink(missing_ok=True)
        raise _TransferError(f"received {written} bytes, more than the {expected} announced")


def _download_http(
    url: str, part: Path, *, resume: bool, retries: int, timeout: float, progress: bool
) -> None:
    if not resume:
        part.unlink(missing_ok=True)
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _http_attempt(url, part, before, timeout, progress)
            return
        except _TransferError as e:
            failures += 1
            if failures > retries:
                kept = part.stat().st_size if part.exists() else 0
                hint = f"; {kept} bytes kept in {part}, rerun to resume" if kept and resume else ""
                raise MatchbenchError(
                    f"downloading {url} failed after {failures} attempts: {e}{hint}"
                ) from None
            if not resume:
                part.unlink(missing_ok=True)
            after = part.stat().st_size if part.exists() else 0
            if after <= before:  # no progress: give the server a moment
                time.sleep(RETRY_BACKOFF_S * 2 ** (failures - 1))


def download_url(
    url: str,
    dest: str | os.PathLike[str],
    *,
    checksum: str | None = None,
    resume: bool = True,
    retries: int = 3,
    timeout: float = 60,
    progress: bool = True,
) -> Path:
    """Download ``url`` (http, https, file:// or a plain local path) to ``dest``; return ``dest``.

    The body streams into ``dest.part``; an existing ``.part`` is resumed with a Range request
    (``resume=False`` starts over). Dropped connections, truncated bodies, timeouts and
    408/429/5xx answers are retried up to ``retries`` times. With ``checksum``
    (``"sha256:<hex>"`` or ``"md5:<hex>"``) the file is verified before it is renamed to
    ``dest``; a mismatch deletes the ``.part``. An existing ``dest`` that matches ``checksum``
    is kept without any request.
    """
    dest = Path(dest)
    expected = parse_checksum(checksum) if checksum else None
    if dest.is_file() and (expected is None or file_digest(dest, expected[0]) == expected[1]):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if _is_local(url):
        _copy_local(url, part, progress)
    else:
        _download_http(
            url, part, resume=resume, retries=retries, timeout=timeout, progress=progress
        )
    if expected is not None:
        algo, want = expected
        got = file_digest(part, algo)
        if got != want:
            part.unlink(missing_ok=True)
            raise MatchbenchError(
                f"checksum mismatch for {url}: expected {algo}:{want}, got {algo}:{got} "
                "(the download was deleted; rerun to fetch it again, or check the mirror)"
            )
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------- extraction


def _refuse(archive: Path, member: str, why: str) -> MatchbenchError:
    return MatchbenchError(f"{archive}: refusing to extract member {member!r}: {why}")


def _inside(name: str) -> str | None:
    """Normalise an archive member name; None when it is absolute or climbs out with ``..``."""
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        return None
    return norm


def _parents(norm: str) -> Iterable[str]:
    return (str(p) for p in PurePosixPath(norm).parents if str(p) != ".")


def _check_tar_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    symlinks = {_inside(m.name) for m in members if m.issym()}
    regular = set()
    for m in members:
        norm = _inside(m.name)
        if norm is None:
            raise _refuse(archive, m.name, "absolute path or '..' leaves the destination")
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
            raise _refuse(archive, m.name, "not a regular file, directory or link (device/fifo)")
        # A member written through a link could land anywhere the link points.
        if any(p in symlinks for p in _parents(norm)):
            raise _refuse(archive, m.name, "its path goes through a symbolic link in the archive")
        if m.issym():
            if m.linkname.startswith("/") or re.match(r"^[A-Za-z]:", m.linkname):
                raise _refuse(archive, m.name, f"symbolic link to absolute path {m.linkname!r}")
            target = posixpath.join(posixpath.dirname(norm), m.linkname)
            if _inside(target) is None:
                raise _refuse(
                    archive, m.name, f"symbolic link {m.linkname!r} leaves the destination"
                )
            # "a -> c/l/.." with "c/l -> .." looks inside but resolves outside: no link chains.
            hops = target.split("/")
            if any(_inside("/".join(hops[:i])) in symlinks for i in range(1, len(hops))):
                raise _refuse(
                    archive, m.name, f"symbolic link {m.linkname!r} goes through another link"
                )
        elif m.islnk():
            target = _inside(m.linkname)
            if target is None or target not in regular:
                raise _refuse(
                    archive, m.name, f"hard link to {m.linkname!r}, not a file of this archive"
                )
        if m.isreg():
            regular.add(norm)


def _check_zip_members(archive: Path, infos: list[zipfile.ZipInfo]) -> None:
    for info in infos:
        if _inside(info.filename) is None:
            raise _refuse(archive, info.filename, "absolute path or '..' leaves the destination")


def _check_tree(archive: Path, root: Path) -> None:
    """After extraction: every entry is a file, directory or a link that resolves inside root."""
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            mode = p.lstat().st_mode
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(mode):
                if not p.resolve().is_relative_to(real_root):
                    raise _refuse(archive, rel, "symbolic link resolves outside the destination")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise _refuse(archive, rel, "not a regular file or directory")


def archive_stem(filename: str) -> str:
    """``cifar-10-binary.tar.gz`` -> ``cifar-10-binary``."""
    lower = filename.lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def extract_archive(archive: str | os.PathLike[str], dest_dir: str | os.PathLike[str]) -> list[str]:
    """Extract a tar (plain, gz, bz2, xz) or zip archive so that ``dest_dir`` holds its content.

    ``dest_dir`` is replaced whole, and only once every member was checked and extracted;
    a refused or corrupt archive leaves ``dest_dir`` as it was. Returns the extracted files
    and links (not directories), as sorted POSIX paths relative to ``dest_dir``.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise MatchbenchError(f"{archive}: archive not found")
    with atomic_dir(dest_dir) as tmp:
        try:
            if archive.name.lower().endswith(".zip"):
                names = _extract_zip(archive, tmp)
            else:
                names = _extract_tar(archive, tmp)
        except _TAR_FILTER_ERROR as e:
            raise _refuse(archive, e.tarinfo.name, str(e)) from None
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
            raise MatchbenchError(
                f"{archive}: not a readable tar or zip archive ({type(e).__name__}: {e})"
            ) from None
        _check_tree(archive, tmp)
    return sorted(names)


def _extract_tar(archive: Path, tmp: Path) -> list[str]:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        _check_tar_members(archive, members)
        if hasattr(tarfile, "data_filter"):
            # Python >= 3.10.12 / 3.11.4: a second, independent line of defence.
            tar.extractall(tmp, members=members, filter="data")
        else:  # pragma: no cover - older Pythons rely on the checks above
            tar.extractall(tmp, members=members)
    return [n for m in members if not m.isdir() and (n := _inside(m.name)) not in (None, ".")]


def _extract_zip(archive: Path, tmp: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        _check_zip_members(archive, infos)
        zf.extractall(tmp)
    return [_inside(i.filename) for i in infos if not i.is_dir()]  # type: ignore[misc]


# --------------------------------------------------------------------------- options

# The options every downloading family takes, as JSON schemas (matchbench.data.options_object).
DOWNLOAD_OPTIONS: dict[str, dict[str, Any]] = {
    "mirror": {
        "type": ["string", "null"],
        "minLength": 1,
        "default": None,
        "description": "a base URL or a folder holding the files under their official names",
    },
    "checksums": {
        "type": "object",
        "additionalProperties": {
            "type": "string",
            "pattern": "^(sha256:[0-9a-fA-F]{64}|md5:[0-9a-fA-F]{32})$",
        },
        "default": {},
        "description": "file name -> 'sha256:<hex>' or 'md5:<hex>', replacing the published one",
    },
}


# --------------------------------------------------------------------------- fetch


def mirror_url(url: str, base_url: str) -> str:
    """Replace the scheme, host and directory of ``url`` by ``base_url`` (a URL or local dir)."""
    name = posixpath.basename(urllib.parse.urlsplit(url).path)
    return base_url.rstrip("/") + "/" + name


def _normalise_sources(
    sources: Iterable[Mapping[str, Any]], checksums: Mapping[str, str] | None
) -> list[dict[str, Any]]:
    out = []
    for i, src in enumerate(sources):
        if "url" not in src:
            raise MatchbenchError(f"download source #{i + 1}: missing 'url'")
        url = str(src["url"])
        filename = str(src.get("filename") or posixpath.basename(urllib.parse.urlsplit(url).path))
        if not filename or "/" in filename or filename in (".", ".."):
            raise MatchbenchError(f"download source {url}: 'filename' must be a plain file name")
        checksum = src.get("checksum")
        if checksum is not None:
            parse_checksum(checksum)
        entry = {"url": url, "filename": filename, "checksum": checksum}
        entry["extract"] = bool(src.get("extract", False))
        if entry["extract"]:
            entry["extract_to"] = str(src.get("extract_to") or archive_stem(filename))
            if _inside(entry["extract_to"]) in (None, ".") or entry["extract_to"].startswith("."):
                raise MatchbenchError(
                    f"download source {url}: 'extract_to' must be a folder inside the raw dir"
                )
        out.append(entry)
    names = [s["filename"] for s in out]
    for name, checksum in (checksums or {}).items():
        if name not in names:
            raise MatchbenchError(
                f"option checksums: unknown file {name!r} (files: {', '.join(names)})"
            )
        parse_checksum(checksum)
        out[names.index(name)]["checksum"] = checksum
    return out


_SOURCE_KEYS = ("url", "filename", "checksum", "extract", "extract_to")


def _manifest_is_current(manifest: Any, sources: list[dict[str, Any]], raw_dir: Path) -> bool:
    entries = manifest.get("sources") if isinstance(manifest, dict) else None
    if not isinstance(entries, list) or len(entries) != len(sources):
        return False
    for src, entry in zip(sources, entries, strict=True):
        if any(entry.get(k) != src.get(k) for k in _SOURCE_KEYS):
            return False
        downloaded = raw_dir / entry.get("path", "")
        if not downloaded.is_file() or downloaded.stat().st_size != entry.get("size"):
            return False
        if not all((raw_dir / f).exists() for f in entry.get("files", [])):
            return False
    return True


def fetch(
    sources: Iterable[Mapping[str, Any]],
    raw_dir: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    checksums: Mapping[str, str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Download (and extract) ``sources`` into ``raw_dir``; write ``raw_dir/MANIFEST.json`` last.

    Each source is ``{"url", "checksum", "filename", "extract": bool}`` (+ optional
    ``"extract_to"``, a folder under ``raw_dir``, by default the archive name without its
    suffix). Downloads go to ``raw_dir/.downloads/``. ``base_url`` (the config option
    ``mirror``) fetches every file by name from a mirror instead; ``checksums`` maps file
    names to checksums that replace the published ones. Nothing is done when the manifest
    already describes these sources and its files are present. Returns the manifest.
    """
    raw_dir = Path(raw_dir)
    wanted = _normalise_sources(sources, checksums)
    manifest_path = raw_dir / MANIFEST_NAME
    if manifest_path.is_file():
        if _manifest_is_current(read_json(manifest_path), wanted, raw_dir):
            return read_json(manifest_path)
        # Stale: remove it first so an interrupted refetch never looks complete.
        manifest_path.unlink()
    entries = []
    for src in wanted:
        url = mirror_url(src["url"], base_url) if base_url else src["url"]
        path = download_url(
            url,
            raw_dir / DOWNLOADS_DIR / src["filename"],
            checksum=src["checksum"],
            progress=progress,
        )
        entry = dict(src)
        entry.update(
            fetched_from=url,
            path=f"{DOWNLOADS_DIR}/{src['filename']}",
            size=path.stat().st_size,
            sha256=sha256_file(path),
        )
        if src["extract"]:
            extracted = extract_archive(path, raw_dir / src["extract_to"])
            entry["files"] = [f"{src['extract_to']}/{f}" for f in extracted]
        entries.append(entry)
    manifest = {"sources": entries}
    write_json(manifest_path, manifest)
    return manifest
