"""Paths under a build's root, which may be a local folder or any fsspec URL (s3://, gs://, memory://).

Every file a build writes goes through these helpers, so a path is joined one way and a file
appears complete or not at all (written under a temporary name, then renamed).
"""

from __future__ import annotations

import os
import uuid

import fsspec


def absolute(url: str) -> str:
    """A URL as given, or a local path made absolute: Ray's workers do not share the caller's folder."""
    return url if "://" in url else os.path.abspath(url)


def join(root: str | os.PathLike, *parts: str) -> str:
    """`root/part/...` as a URL or path on `root`'s filesystem."""
    return "/".join([os.fspath(root).rstrip("/"), *(part.strip("/") for part in parts)])


def locate(root: str | os.PathLike, relpath: str = "") -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of `root` and the path of `relpath` under it, as that filesystem names it."""
    fs, base = fsspec.core.url_to_fs(os.fspath(root))
    return fs, join(base, relpath) if relpath else base.rstrip("/")


def exists(root: str | os.PathLike, relpath: str) -> bool:
    fs, path = locate(root, relpath)
    return fs.exists(path)


def read_bytes(root: str | os.PathLike, relpath: str) -> bytes:
    fs, path = locate(root, relpath)
    return fs.cat_file(path)


def write_bytes_atomic(root: str | os.PathLike, relpath: str, data: bytes) -> None:
    """Write `root/relpath` through a temporary name and a rename: readers never see half a file."""
    fs, final = locate(root, relpath)
    fs.makedirs(os.path.dirname(final), exist_ok=True)
    temporary = f"{final}.tmp-{uuid.uuid4().hex}"
    with fs.open(temporary, "wb") as handle:
        handle.write(data)
    fs.mv(temporary, final)


def write_text_atomic(root: str | os.PathLike, relpath: str, text: str) -> None:
    write_bytes_atomic(root, relpath, text.encode("utf-8"))
