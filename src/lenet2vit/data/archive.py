"""File trees to read sources from (a folder or a tar/zip archive read in place) and safe extraction."""

from __future__ import annotations

import bisect
import os
import posixpath
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lenet2vit.data.arrays import DataError

ARCHIVE_HINT = "pass an image folder, cifar-10-batches-py or a .tar.gz/.tgz/.tar/.zip archive"

# Caps on what reading an archive may expand to: no image file comes near the first, and the
# second keeps an archive that expands without end (a "zip bomb") from exhausting memory.
# $LENET2VIT_ARCHIVE_MAX_MEMBER_MB and $LENET2VIT_ARCHIVE_MAX_TOTAL_MB change them.
MAX_MEMBER_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 16 * 2**30


def _cap(env: str, default: int) -> int:
    try:
        return int(float(os.environ[env]) * 2**20) if env in os.environ else default
    except ValueError:
        raise DataError(f"${env} must be a number of megabytes, got {os.environ[env]!r}") from None


def _hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"  # __MACOSX: resource forks in macOS zips


def clean_member_name(name: str) -> str | None:
    """Normalise an archive member name to 'a/b/c', or None for names a source ignores.

    Ignored: absolute names, names with '..', and anything hidden (a part starting with '.',
    or a macOS '__MACOSX' folder).
    """
    name = name.replace("\\", "/")
    if name.startswith("/"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or any(_hidden(p) for p in parts):
        return None
    return "/".join(parts)


def is_archive(path: Path) -> bool:
    """Whether `path` is a file that tarfile or zipfile can open."""
    try:
        return path.is_file() and (tarfile.is_tarfile(path) or zipfile.is_zipfile(path))
    except OSError:
        return False


class DirTree:
    """A folder on disk, seen through the few operations the sources need (paths are 'a/b')."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def isdir(self, rel: str) -> bool:
        return self._path(rel).is_dir()

    def isfile(self, rel: str) -> bool:
        return self._path(rel).is_file()

    def listdir(self, rel: str) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self._path(rel)) if not _hidden(n))
        except OSError as e:
            raise DataError(
                f"cannot list {self._path(rel)}: {e.strerror}; check that it exists and is readable"
            ) from None

    def files_under(self, rel: str) -> list[str]:
        out = []
        base = self._path(rel)

        def fail(e: OSError) -> None:
            raise DataError(f"cannot list {e.filename}: {e.strerror}; check that it is readable") from None

        for dirpath, dirnames, filenames in os.walk(base, onerror=fail):
            dirnames[:] = [d for d in dirnames if not _hidden(d)]
            sub = Path(dirpath).relative_to(base).as_posix()
            for f in filenames:
                if not _hidden(f):
                    out.append(posixpath.join(rel, sub, f) if sub != "." else posixpath.join(rel, f))
        return sorted(out)

    def read(self, rel: str) -> bytes:
        return self._path(rel).read_bytes()

    def stat_key(self, rels: list[str]) -> list[tuple[str, int, int]]:
        """(path, size, mtime_ns) of each path, for cache keys."""
        out = []
        for rel in rels:
            st = self._path(rel).stat()
            out.append((rel, st.st_size, st.st_mtime_ns))
        return out


class ArchiveTree:
    """The regular files of a tar/zip archive, read in one pass and kept in memory.

    Only members that `keep(name)` accepts are read; the folder structure of all visible
    members is recorded so empty or non-image class folders are still seen.
    """

    def __init__(self, path: Path, keep: Callable[[str], bool], progress: bool = False) -> None:
        from tqdm.auto import tqdm

        self.path = path
        self.files: dict[str, bytes] = {}
        self.all_files: set[str] = set()
        self.dirs: set[str] = {""}
        self.children: dict[str, set[str]] = {}
        self._sorted: list[str] | None = None
        self.max_member = _cap("LENET2VIT_ARCHIVE_MAX_MEMBER_MB", MAX_MEMBER_BYTES)
        self.max_total = _cap("LENET2VIT_ARCHIVE_MAX_TOTAL_MB", MAX_TOTAL_BYTES)
        self._total = 0
        bar = tqdm(desc=f"reading {path.name}", unit=" files", disable=not progress, leave=False)
        try:
            if tarfile.is_tarfile(path):
                self._read_tar(keep, bar.update)
            elif zipfile.is_zipfile(path):
                self._read_zip(keep, bar.update)
            else:
                raise DataError(f"{path} is not a tar or zip archive; {ARCHIVE_HINT}")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
            raise DataError(
                f"cannot read archive {path} ({type(e).__name__}: {e}); "
                f"check that the file is complete, or {ARCHIVE_HINT}"
            ) from None
        finally:
            bar.close()

    def _add(self, name: str, is_dir: bool) -> None:
        parts = name.split("/")
        for i in range(len(parts)):
            parent, child = "/".join(parts[:i]), parts[i]
            self.children.setdefault(parent, set()).add(child)
            if i < len(parts) - 1 or is_dir:
                self.dirs.add("/".join(parts[: i + 1]))
        if not is_dir:
            self.all_files.add(name)

    def _read_tar(self, keep: Callable[[str], bool], tick: Callable[[], Any]) -> None:
        with tarfile.open(self.path, "r|*") as tf:  # one sequential pass: no seeking in the gzip stream
            for m in tf:
                tick()
                name = clean_member_name(m.name)
                if name is None or not (m.isdir() or m.isfile()):
                    continue
                self._add(name, m.isdir())
                if m.isfile():
                    self._count(name, m.size)  # skipped members expand too
                if m.isfile() and keep(name):
                    f = tf.extractfile(m)
                    self.files[name] = self._bounded_read(f, name) if f is not None else b""

    def _read_zip(self, keep: Callable[[str], bool], tick: Callable[[], Any]) -> None:
        with zipfile.ZipFile(self.path) as zf:
            for info in zf.infolist():
                tick()
                name = clean_member_name(info.filename)
                if name is None:
                    continue
                self._add(name, info.is_dir())
                if not info.is_dir() and keep(name):
                    self._count(name, info.file_size)
                    with zf.open(info) as f:  # the stored size may lie: read no more than the cap
                        self.files[name] = self._bounded_read(f, name)

    def _too_big(self, what: str) -> DataError:
        return DataError(
            f"{self.path}: {what}; refusing to expand it (an archive that expands without end?). Extract it "
            "yourself and pass the folder, or raise $LENET2VIT_ARCHIVE_MAX_MEMBER_MB / $LENET2VIT_ARCHIVE_MAX_TOTAL_MB"
        )

    def _count(self, name: str, size: int) -> None:
        if size > self.max_member:
            raise self._too_big(f"member {name} expands to {size / 2**20:,.0f} MB, over the "
                                f"{self.max_member / 2**20:,.0f} MB a file may have")
        self._total += size
        if self._total > self.max_total:
            raise self._too_big(f"its members expand to over {self.max_total / 2**20:,.0f} MB")

    def _bounded_read(self, f, name: str) -> bytes:
        data = f.read(self.max_member + 1)
        if len(data) > self.max_member:
            raise self._too_big(f"member {name} expands to over {self.max_member / 2**20:,.0f} MB")
        return data

    def isdir(self, rel: str) -> bool:
        return rel in self.dirs

    def isfile(self, rel: str) -> bool:
        return rel in self.all_files

    def listdir(self, rel: str) -> list[str]:
        return sorted(self.children.get(rel, ()))

    def files_under(self, rel: str) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.all_files)
        prefix = rel + "/" if rel else ""
        lo = bisect.bisect_left(self._sorted, prefix)
        hi = bisect.bisect_left(self._sorted, prefix + "\U0010ffff")  # names with the prefix sort in between
        return self._sorted[lo:hi]

    def read(self, rel: str) -> bytes:
        try:
            return self.files[rel]
        except KeyError:
            raise OSError(f"{rel} was not read from {self.path}") from None


Tree = DirTree | ArchiveTree


def _refuse(archive: Path, name: str, why: str) -> DataError:
    return DataError(f"refusing to extract {archive}: member {name!r} {why}; repack the archive without such members")


def _check_member_path(archive: Path, name: str, symlinks: set[str], what: str = "") -> str:
    """Lexically resolve an archive path and refuse it when it leaves the destination or passes
    through a symlink member (links are checked before anything is written)."""
    if name.startswith(("/", "\\")) or (name[1:2] == ":" and name[:1].isalpha()):  # /x, \\x, C:x
        raise _refuse(archive, name, f"has an absolute {what}path")
    parts: list[str] = []
    for part in name.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if parts and "/".join(parts) in symlinks:
            raise _refuse(archive, name, f"{what}goes through the symlink {'/'.join(parts)!r}")
        if part != "..":
            parts.append(part)
        elif parts:
            parts.pop()
        else:
            raise _refuse(archive, name, f"{what}escapes the destination folder")
    return "/".join(parts)


def _check_sizes(archive: Path, sizes: list[tuple[str, int]]) -> None:
    """Refuse, before anything is written, an archive whose members expand past the caps."""
    max_member = _cap("LENET2VIT_ARCHIVE_MAX_MEMBER_MB", MAX_MEMBER_BYTES)
    max_total = _cap("LENET2VIT_ARCHIVE_MAX_TOTAL_MB", MAX_TOTAL_BYTES)
    for name, size in sizes:
        if size > max_member:
            raise _refuse(archive, name, f"expands to {size / 2**20:,.0f} MB, over the {max_member / 2**20:,.0f} MB cap "
                                         "($LENET2VIT_ARCHIVE_MAX_MEMBER_MB)")
    total = sum(size for _, size in sizes)
    if total > max_total:
        raise DataError(f"refusing to extract {archive}: it expands to {total / 2**20:,.0f} MB, over the "
                        f"{max_total / 2**20:,.0f} MB cap ($LENET2VIT_ARCHIVE_MAX_TOTAL_MB)")


def safe_extract(archive: str | Path, dest: str | Path) -> Path:
    """Extract a tar (.tar, .tar.gz, .tgz, ...) or zip archive into `dest` and return `dest`.

    Every member is checked before anything is written: absolute paths, paths with '..' that
    leave `dest`, symlinks and hard links that point outside `dest` (or through another link),
    and device files or FIFOs make it raise DataError. Tar archives are additionally extracted
    with Python's 'data' filter where available.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataError(f"archive {archive} does not exist; {ARCHIVE_HINT}")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                symlinks = {_check_member_path(archive, m.name, set()) for m in members if m.issym()}
                for m in members:
                    name = _check_member_path(archive, m.name, symlinks)
                    if m.isdev():  # character/block devices and FIFOs
                        raise _refuse(archive, m.name, "is a device file")
                    if m.issym():  # a symlink's target is relative to its own folder
                        target = posixpath.join(posixpath.dirname(name), m.linkname)
                        _check_member_path(archive, target, symlinks, "link target ")
                    elif m.islnk():
                        _check_member_path(archive, m.linkname, symlinks, "link target ")
                _check_sizes(archive, [(m.name, m.size) for m in members if m.isfile()])
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(dest, members=members, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tf.extractall(dest, members=members)
        elif zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                links = {i.filename for i in infos if stat.S_ISLNK(i.external_attr >> 16)}
                symlinks = {_check_member_path(archive, n, set()) for n in links}
                for info in infos:
                    name = _check_member_path(archive, info.filename, symlinks)
                    if info.filename in links:
                        target = posixpath.join(posixpath.dirname(name), zf.read(info).decode("utf-8", "replace"))
                        _check_member_path(archive, target, symlinks, "link target ")
                _check_sizes(archive, [(i.filename, i.file_size) for i in infos if not i.is_dir()])
                zf.extractall(dest)
        else:
            raise DataError(f"{archive} is not a tar or zip archive; {ARCHIVE_HINT}")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise DataError(
            f"cannot extract {archive} ({type(e).__name__}: {e}); check that the file is complete"
        ) from None
    return dest
