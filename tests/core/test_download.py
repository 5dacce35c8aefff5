"""The downloader over real HTTP on 127.0.0.1: resume, retries, checksums, safe extraction, fetch."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from matchbench.data import download
from matchbench.data.download import download_url, extract_archive, fetch
from matchbench.errors import MatchbenchError

PAYLOAD = bytes(range(256)) * 4000  # 1 MB, every offset distinguishable modulo 256


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.0)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def serve(http_server, name: str = "blob.bin", data: bytes = PAYLOAD) -> str:
    (http_server.root / name).write_bytes(data)
    return http_server.url(name)


# --------------------------------------------------------------------------- download_url


def test_download_verifies_checksum(http_server, tmp_path):
    url = serve(http_server)
    dest = download_url(url, tmp_path / "blob.bin", checksum=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "blob.bin.part").exists()
    # A verified file already in place is kept without any request.
    download_url(url, dest, checksum=md5(PAYLOAD), progress=False)
    assert http_server.count("blob.bin") == 1


def test_truncated_transfer_resumes_with_only_missing_bytes(http_server, tmp_path):
    url = serve(http_server)
    http_server.truncate("blob.bin", after=300_000, times=2)
    dest = download_url(url, tmp_path / "blob.bin", checksum=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    ranges = [r.range for r in http_server.requests]
    assert ranges == [None, "bytes=300000-", "bytes=600000-"]
    assert [r.status for r in http_server.requests] == [200, 206, 206]
    assert http_server.bytes_sent("blob.bin") == len(PAYLOAD)  # nothing sent twice


def test_partial_file_from_earlier_run_is_resumed(http_server, tmp_path):
    url = serve(http_server)
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD[:123_456])
    download_url(url, tmp_path / "blob.bin", checksum=sha256(PAYLOAD), progress=False)
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD
    assert http_server.bytes_sent("blob.bin") == len(PAYLOAD) - 123_456


def test_complete_partial_file_gets_416_and_is_kept(http_server, tmp_path):
    url = serve(http_server)
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD)
    download_url(url, tmp_path / "blob.bin", checksum=sha256(PAYLOAD), progress=False)
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD
    assert [r.status for r in http_server.requests] == [416]


def test_server_ignoring_range_restarts_from_scratch(http_server, tmp_path):
    url = serve(http_server)
    http_server.ignore_range = True
    # Stale garbage in the .part must be overwritten, not appended to.
    (tmp_path / "blob.bin.part").write_bytes(b"\xff" * 5000)
    http_server.truncate("blob.bin", after=400_000)
    download_url(url, tmp_path / "blob.bin", checksum=sha256(PAYLOAD), progress=False)
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD
    assert [(r.range, r.status) for r in http_server.requests] == [
        ("bytes=5000-", 200),
        ("bytes=400000-", 200),
    ]


def test_server_errors_are_retried_then_reported(http_server, tmp_path):
    url = serve(http_server)
    http_server.fail("blob.bin", status=503, times=1)
    download_url(url, tmp_path / "a.bin", progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert http_server.count("blob.bin") == 2

    http_server.reset()
    http_server.truncate("blob.bin", after=1000, times=10)
    with pytest.raises(MatchbenchError, match=r"failed after 3 attempts.*rerun to resume") as e:
        download_url(url, tmp_path / "b.bin", retries=2, progress=False)
    assert url in str(e.value)
    assert not (tmp_path / "b.bin").exists()
    assert (tmp_path / "b.bin.part").stat().st_size == 3000  # kept for the next run


def test_not_found_is_not_retried(http_server, tmp_path):
    with pytest.raises(MatchbenchError, match="HTTP 404") as e:
        download_url(http_server.url("missing.bin"), tmp_path / "m.bin", progress=False)
    assert http_server.url("missing.bin") in str(e.value)
    assert http_server.count("missing.bin") == 1


def test_checksum_mismatch_names_url_and_digests_and_leaves_nothing(http_server, tmp_path):
    url = serve(http_server)
    wrong = "md5:" + "0" * 32
    with pytest.raises(MatchbenchError) as e:
        download_url(url, tmp_path / "blob.bin", checksum=wrong, progress=False)
    msg = str(e.value)
    assert url in msg and wrong in msg and md5(PAYLOAD) in msg
    assert list(tmp_path.iterdir()) == []


def test_malformed_checksum_is_refused_before_any_request(http_server, tmp_path):
    url = serve(http_server)
    with pytest.raises(MatchbenchError, match="expected 'sha256:"):
        download_url(url, tmp_path / "blob.bin", checksum="crc32:1234", progress=False)
    assert http_server.count() == 0


def test_file_urls_and_plain_paths(tmp_path):
    src = tmp_path / "mirror dir" / "blob.bin"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    a = download_url(src.as_uri(), tmp_path / "a.bin", checksum=sha256(PAYLOAD), progress=False)
    b = download_url(str(src), tmp_path / "b.bin", checksum=sha256(PAYLOAD), progress=False)
    assert a.read_bytes() == b.read_bytes() == PAYLOAD
    with pytest.raises(MatchbenchError, match="no such file"):
        download_url(str(tmp_path / "nope.bin"), tmp_path / "c.bin", progress=False)


# --------------------------------------------------------------------------- extraction


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode="w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for m in members:
            if isinstance(m, tuple):
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
            else:
                tar.addfile(m)
    return path


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize("mode,suffix", [("w:gz", ".tar.gz"), ("w:bz2", ".tar.bz2"),
                                         ("w:xz", ".tar.xz"), ("w", ".tar")])  # fmt: skip
def test_extract_tar_formats(tmp_path, mode, suffix):
    archive = make_tar(
        tmp_path / f"a{suffix}",
        [("top/a.txt", b"a"), ("top/sub/b.txt", b"b"), link("top/l", "a.txt")],
        mode,
    )
    files = extract_archive(archive, tmp_path / "out")
    assert files == ["top/a.txt", "top/l", "top/sub/b.txt"]
    assert (tmp_path / "out/top/sub/b.txt").read_bytes() == b"b"
    assert (tmp_path / "out/top/l").read_bytes() == b"a"


def test_extract_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("d/x.txt", "x")
        zf.writestr("y.txt", "y")
    assert extract_archive(tmp_path / "a.zip", tmp_path / "out") == ["d/x.txt", "y.txt"]
    assert (tmp_path / "out/d/x.txt").read_text() == "x"


def _device() -> tarfile.TarInfo:
    info = tarfile.TarInfo("dev/null")
    info.type = tarfile.CHRTYPE
    return info


@pytest.mark.parametrize(
    "evil,member",
    [
        (("../evil", b"x"), "../evil"),
        (("a/../../evil", b"x"), "a/../../evil"),
        (("/tmp/matchbench-abs-evil", b"x"), "/tmp/matchbench-abs-evil"),
        (link("l", "../../outside"), "l"),
        (link("l", "/etc/passwd"), "l"),
        (link("h", "../outside", tarfile.LNKTYPE), "h"),
        (_device(), "dev/null"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-abs", "hardlink", "dev"],
)
def test_tar_escapes_are_refused_and_nothing_extracted(tmp_path, evil, member):
    archive = make_tar(tmp_path / "evil.tar.gz", [("ok.txt", b"fine"), evil])
    with pytest.raises(MatchbenchError) as e:
        extract_archive(archive, tmp_path / "work" / "out")
    assert str(archive) in str(e.value) and repr(member) in str(e.value)
    assert list((tmp_path / "work").iterdir()) == []  # not even ok.txt, no temp dir left
    assert not (tmp_path / "evil").exists() and not Path("/tmp/matchbench-abs-evil").exists()


def test_tar_writing_through_a_symlink_is_refused(tmp_path):
    # "l" itself points inside, but "l/../.." then escapes: lexical checks alone miss this.
    archive = make_tar(tmp_path / "a.tar", [link("d/l", ".."), ("d/l/x", b"x")], "w")
    with pytest.raises(MatchbenchError, match="goes through a symbolic link"):
        extract_archive(archive, tmp_path / "out")
    chain = make_tar(tmp_path / "b.tar", [link("c/l", ".."), link("a", "c/l/..")], "w")
    with pytest.raises(MatchbenchError, match="'a'.*goes through another link"):
        extract_archive(chain, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_links_are_checked_again_after_extraction(tmp_path, monkeypatch):
    # Even with the member checks and tarfile's filter switched off, an escaping link found
    # in the extracted tree is refused before anything is renamed into place.
    monkeypatch.setattr(download, "_check_tar_members", lambda archive, members: None)
    monkeypatch.delattr(tarfile, "data_filter")
    chain = make_tar(tmp_path / "b.tar", [link("c/l", ".."), link("a", "c/l/..")], "w")
    with pytest.raises(MatchbenchError, match="'a'.*resolves outside"):
        extract_archive(chain, tmp_path / "work" / "out")
    assert list((tmp_path / "work").iterdir()) == []


def test_failed_extraction_keeps_previous_content(tmp_path):
    out = tmp_path / "out"
    extract_archive(make_tar(tmp_path / "good.tar", [("v1.txt", b"1")], "w"), out)
    with pytest.raises(MatchbenchError):
        extract_archive(make_tar(tmp_path / "bad.tar", [("../x", b"x")], "w"), out)
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(make_tar(tmp_path / "t.tar.gz", [("a", PAYLOAD)]).read_bytes()[:2000])
    with pytest.raises(MatchbenchError, match="not a readable tar or zip"):
        extract_archive(truncated, out)
    assert sorted(p.name for p in tmp_path.joinpath("out").iterdir()) == ["v1.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a\\..\\..\\evil.txt"])
def test_zip_slip_is_refused(tmp_path, name):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr(zipfile.ZipInfo(name), "x")
    with pytest.raises(MatchbenchError, match="refusing to extract member"):
        extract_archive(tmp_path / "evil.zip", tmp_path / "work" / "out")
    assert not (tmp_path / "work" / "out").exists()
    assert not (tmp_path / "evil.txt").exists()


# --------------------------------------------------------------------------- fetch


def test_fetch_from_mirror_writes_manifest_and_is_idempotent(http_server, tmp_path):
    archive = make_tar(http_server.root / "data.tar.gz", [("data/x.txt", b"x")])
    (http_server.root / "labels.csv").write_bytes(b"id,label\n")
    sources = [
        {
            "url": "https://example.invalid/pub/v1/data.tar.gz",
            "checksum": "md5:" + hashlib.md5(archive.read_bytes()).hexdigest(),
            "filename": "data.tar.gz",
            "extract": True,
        },
        {"url": "https://example.invalid/labels.csv", "checksum": None, "filename": "labels.csv"},
    ]
    raw = tmp_path / "raw"
    manifest = fetch(sources, raw, base_url=http_server.url("").rstrip("/"), progress=False)
    assert (raw / "data/data/x.txt").read_bytes() == b"x"
    assert (raw / ".downloads/labels.csv").read_bytes() == b"id,label\n"
    on_disk = json.loads((raw / "MANIFEST.json").read_text())
    assert on_disk == manifest
    first = on_disk["sources"][0]
    assert first["url"] == sources[0]["url"]
    assert first["fetched_from"] == http_server.url("data.tar.gz")
    assert first["size"] == archive.stat().st_size
    assert first["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert first["files"] == ["data/data/x.txt"]
    assert on_disk["sources"][1]["sha256"] == hashlib.sha256(b"id,label\n").hexdigest()
    assert http_server.count() == 2

    assert fetch(sources, raw, base_url=http_server.url(""), progress=False) == manifest
    assert http_server.count() == 2  # second call: no request at all

    # A checksum override changes the sources: the manifest is rebuilt (files are reused).
    override = {"labels.csv": sha256(b"id,label\n")}
    fetch(sources, raw, base_url=http_server.url(""), checksums=override, progress=False)
    assert (
        json.loads((raw / "MANIFEST.json").read_text())["sources"][1]["checksum"]
        == (override["labels.csv"])
    )
    assert http_server.count() == 2


def test_fetch_refetches_when_files_are_missing_and_checks_options(http_server, tmp_path):
    (http_server.root / "f.bin").write_bytes(PAYLOAD)
    sources = [{"url": "https://example.invalid/f.bin", "checksum": sha256(PAYLOAD)}]
    raw = tmp_path / "raw"
    fetch(sources, raw, base_url=http_server.url(""), progress=False)
    os.remove(raw / ".downloads/f.bin")
    fetch(sources, raw, base_url=http_server.url(""), progress=False)
    assert http_server.count("f.bin") == 2
    with pytest.raises(MatchbenchError, match=r"option checksums: unknown file 'g.bin'"):
        fetch(sources, raw, checksums={"g.bin": sha256(b"")}, progress=False)


def test_fetch_from_local_mirror_directory(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    make_tar(mirror / "a.tar.gz", [("a.txt", b"a")])
    sources = [{"url": "https://example.invalid/x/a.tar.gz", "extract": True}]
    fetch(sources, tmp_path / "raw1", base_url=str(mirror), progress=False)
    fetch(sources, tmp_path / "raw2", base_url=mirror.as_uri(), progress=False)
    assert (tmp_path / "raw1/a/a.txt").read_bytes() == (tmp_path / "raw2/a/a.txt").read_bytes()
