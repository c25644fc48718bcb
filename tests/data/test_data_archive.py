"""safe_extract: ordinary archives extract, crafted ones are refused before anything is written."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from lenet2vit.data import DataError, safe_extract


def make_tar(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """members: (kind, name, data or link target) with kind in file, dir, sym, hard, chr, fifo."""
    with tarfile.open(path, "w:gz") as tf:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            data = None
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size = len(data)
            else:
                info.type = {
                    "dir": tarfile.DIRTYPE,
                    "sym": tarfile.SYMTYPE,
                    "hard": tarfile.LNKTYPE,
                    "chr": tarfile.CHRTYPE,
                    "fifo": tarfile.FIFOTYPE,
                }[kind]
                if kind in ("sym", "hard"):
                    info.linkname = str(payload)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_ordinary_archives_extract(tmp_path):
    tar = make_tar(
        tmp_path / "ok.tar.gz",
        [("dir", "d", ""), ("file", "d/a.txt", "hello"), ("sym", "d/link", "a.txt"), ("hard", "d/b.txt", "d/a.txt")],
    )
    dest = safe_extract(tar, tmp_path / "out")
    assert (dest / "d" / "a.txt").read_text() == "hello"
    assert (dest / "d" / "link").read_text() == "hello" and (dest / "d" / "b.txt").read_text() == "hello"
    zpath = tmp_path / "ok.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("top/x/y.txt", "zip")
    assert (safe_extract(zpath, tmp_path / "zout") / "top" / "x" / "y.txt").read_text() == "zip"


@pytest.mark.parametrize(
    "members, why",
    [
        ([("file", "../evil.txt", "x")], "escapes the destination"),
        ([("file", "d/../../evil.txt", "x")], "escapes the destination"),
        ([("file", "/tmp/lenet2vit-absolute-evil.txt", "x")], "absolute"),
        ([("sym", "link", "/etc")], "absolute"),
        ([("sym", "link", "../outside")], "escapes the destination"),
        ([("sym", "d/link", "../../outside")], "escapes the destination"),
        ([("sym", "link", "."), ("file", "link/../evil.txt", "x")], "goes through the symlink"),
        ([("sym", "a", "b/.."), ("sym", "b", ".")], "goes through the symlink"),
        ([("sym", "link", "d"), ("file", "link/x.txt", "x")], "goes through the symlink"),
        ([("hard", "h", "../outside")], "escapes the destination"),
        ([("hard", "h", "/etc/passwd")], "absolute"),
        ([("chr", "dev", "")], "device file"),
        ([("fifo", "pipe", "")], "device file"),
    ],
)
def test_crafted_tar_is_refused(tmp_path, members, why):
    tar = make_tar(tmp_path / "evil.tar.gz", [("file", "fine.txt", "ok"), *members])
    dest = tmp_path / "box" / "out"
    with pytest.raises(DataError, match=why):
        safe_extract(tar, dest)
    assert not (dest / "fine.txt").exists()  # checked before anything is written
    assert not (tmp_path / "box" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/lenet2vit-absolute-evil.txt").exists()


def test_crafted_zip_is_refused(tmp_path):
    for name, why in (("../evil.txt", "escapes"), ("/abs.txt", "absolute")):
        zpath = tmp_path / "evil.zip"
        with zipfile.ZipFile(zpath, "w") as zf:
            zf.writestr("fine.txt", "ok")
            zf.writestr(zipfile.ZipInfo(name), "x")
        with pytest.raises(DataError, match=why):
            safe_extract(zpath, tmp_path / "out")
        assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "fine.txt").exists()


def test_not_an_archive(tmp_path):
    fake = tmp_path / "data.tar.gz"
    fake.write_text("plain text")
    with pytest.raises(DataError, match="not a tar or zip archive"):
        safe_extract(fake, tmp_path / "out")
    with pytest.raises(DataError, match="does not exist"):
        safe_extract(tmp_path / "missing.zip", tmp_path / "out")


# ----------------------------------------------------------------------------- archives that expand without end


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """A zip of a few MB whose one image-named member expands to 2 GiB of zeros."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    chunk = bytes(64 * 2**20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("train/cat/ok.png", b"tiny")
        with z.open("train/cat/huge.png", "w", force_zip64=True) as f:
            for _ in range(32):
                f.write(chunk)
    assert path.stat().st_size < 20 * 2**20
    return path


@pytest.mark.slow
def test_a_zip_bomb_gets_a_clear_error_not_an_out_of_memory_crash(zip_bomb, tmp_path):
    import resource

    from lenet2vit.data import load_split

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match=r"huge\.png expands to 2,048 MB, over the 256 MB.*refusing to expand it"):
        load_split("folder", zip_bomb, "train", cache_dir=tmp_path, progress=False)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 512 * 1024  # KiB: nothing near 2 GiB was read
    with pytest.raises(DataError, match=r"huge\.png.*expands to 2,048 MB"):
        safe_extract(zip_bomb, tmp_path / "out")
    assert not (tmp_path / "out" / "train").exists()  # refused before anything was written


def test_a_zip_whose_header_understates_a_member_is_refused_clearly(tmp_path, monkeypatch):
    from lenet2vit.data.archive import ArchiveTree

    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("train/cat/a.png", bytes(3 * 2**20))
    monkeypatch.setattr(zipfile.ZipInfo, "file_size", property(lambda self: 10, lambda self, v: None), raising=False)
    with pytest.raises(DataError, match=r"cannot read archive .*liar\.zip .*Bad CRC-32 for file 'train/cat/a\.png'"):
        ArchiveTree(path, keep=lambda n: True)  # zipfile reads no more than the header says, then the CRC fails


def test_many_members_over_the_total_cap_are_refused(tmp_path, monkeypatch):
    from lenet2vit.data.archive import ArchiveTree

    tar = make_tar(tmp_path / "many.tar.gz", [("file", f"train/cat/{i}.png", bytes(300 * 1024)) for i in range(8)])
    monkeypatch.setenv("LENET2VIT_ARCHIVE_MAX_TOTAL_MB", "2")
    with pytest.raises(DataError, match="its members expand to over 2 MB"):
        ArchiveTree(tar, keep=lambda n: True)
    with pytest.raises(DataError, match="it expands to 2 MB, over the 2 MB cap"):
        safe_extract(tar, tmp_path / "out")
