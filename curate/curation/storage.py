"""Paths under a build's root, which may be a local folder or any fsspec URL (s3://, gs://, memory://).

Every file a build writes goes through these helpers, so a path is joined one way and a file
appears complete or not at all (written under a temporary name, then renamed).
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from typing import BinaryIO, Iterator

import fsspec

from curate.curation.errors import UserError, error_line


@contextmanager
def reaching(url: str, what: str) -> Iterator[None]:
    """Say in one line that `url` cannot be reached (no credentials, no such bucket, no network) when
    the first look at a user's storage fails: that is the user's to fix, not a crash."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        raise UserError(f"cannot reach {what} {url}: {error_line(error)}") from None


def absolute(url: str) -> str:
    """A URL as given, or a local path made absolute: Ray's workers do not share the caller's folder."""
    return url if "://" in url else os.path.abspath(url)


def join(root: str | os.PathLike, *parts: str) -> str:
    """`root/part/...` as a URL or path on `root`'s filesystem."""
    return "/".join([os.fspath(root).rstrip("/"), *(part.strip("/") for part in parts)])


def locate(root: str | os.PathLike, relpath: str = "") -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of `root` and the path of `relpath` under it (`root` itself for ""), as that
    filesystem names it."""
    fs, base = fsspec.core.url_to_fs(os.fspath(root))
    return fs, join(base, relpath) if relpath else base.rstrip("/")


def is_remote(url: str | os.PathLike) -> bool:
    """Whether `url` names object storage (or any filesystem but the local one)."""
    return "://" in os.fspath(url) and not os.fspath(url).startswith("file://")


def parent(url: str | os.PathLike) -> str:
    """The folder holding `url`, on the same filesystem (`s3://b/run/checkpoints` -> `s3://b/run`)."""
    return os.fspath(url).rstrip("/").rsplit("/", 1)[0]


def _fresh(root: str | os.PathLike, relpath: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """`locate`, with the filesystem's cached listings of the path dropped: another process (a Ray
    task, an earlier run) may have written there since."""
    fs, path = locate(root, relpath)
    fs.invalidate_cache(path)
    return fs, path


def exists(root: str | os.PathLike, relpath: str = "") -> bool:
    fs, path = _fresh(root, relpath)
    return fs.exists(path)


def isdir(root: str | os.PathLike, relpath: str = "") -> bool:
    """Whether `root/relpath` is a folder; on object storage, whether any object lies under it."""
    fs, path = _fresh(root, relpath)
    return fs.isdir(path)


def isfile(root: str | os.PathLike, relpath: str = "") -> bool:
    fs, path = _fresh(root, relpath)
    return fs.isfile(path)


def listdir(root: str | os.PathLike, relpath: str = "") -> list[str]:
    """The names of the entries of folder `root/relpath`, sorted; none when it does not exist."""
    fs, path = _fresh(root, relpath)
    if not fs.isdir(path):
        return []
    return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False))


def remove_file(root: str | os.PathLike, relpath: str) -> None:
    """Delete file `root/relpath` if it is there."""
    fs, path = _fresh(root, relpath)
    if fs.exists(path):
        fs.rm_file(path)


def read_bytes(root: str | os.PathLike, relpath: str = "") -> bytes:
    fs, path = locate(root, relpath)
    return fs.cat_file(path)


def read_bytes_if_present(root: str | os.PathLike, relpath: str = "") -> bytes | None:
    """The file's bytes, or None when it is not there (one request: no exists() before it to race)."""
    try:
        return read_bytes(root, relpath)
    except FileNotFoundError:
        return None


def local_file(url: str | os.PathLike) -> str:
    """A local path with the bytes of file `url`: itself, or a download of a remote one, cached in a
    temporary folder for the life of the process (safetensors maps its files from local disk)."""
    url = os.fspath(url)
    return fsspec.open_local(f"simplecache::{url}") if is_remote(url) else url


@contextmanager
def open_atomic(root: str | os.PathLike, relpath: str) -> Iterator[BinaryIO]:
    """A binary handle on a temporary name, renamed to `root/relpath` when the block ends without an
    error (and removed when it ends with one): readers never see half a file."""
    fs, final = locate(root, relpath)
    fs.makedirs(os.path.dirname(final), exist_ok=True)
    temporary = f"{final}.tmp-{uuid.uuid4().hex}"
    try:
        with fs.open(temporary, "wb") as handle:
            yield handle
    except BaseException:
        if fs.exists(temporary):
            fs.rm(temporary)
        raise
    fs.mv(temporary, final)


def write_bytes_atomic(root: str | os.PathLike, relpath: str, data: bytes) -> None:
    """Write `root/relpath` through a temporary name and a rename: readers never see half a file."""
    with open_atomic(root, relpath) as handle:
        handle.write(data)


def copy_atomic(source: str | os.PathLike, root: str | os.PathLike, relpath: str) -> None:
    """Copy file `source` to `root/relpath`, streamed, possibly from one filesystem to another."""
    fs, path = locate(source)
    with fs.open(path, "rb") as reading, open_atomic(root, relpath) as writing:
        shutil.copyfileobj(reading, writing)


def write_text_atomic(root: str | os.PathLike, relpath: str, text: str) -> None:
    write_bytes_atomic(root, relpath, text.encode("utf-8"))
