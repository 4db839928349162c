"""Input discovery and raw record reading through fsspec.

Two small blocks with one job each:
- `list_input_files` turns the user's URLs (paths, globs, directories, memory://, s3://, ...)
  into a sorted list of files with their format, so the input order never depends on
  listing order;
- `read_raw_records` parses one file into `RawRecord`s: a JSON object, or the reason it could
  not be parsed. It never raises on bad data; validation of the text comes later.
A large plain JSONL file is read in `Span`s, byte ranges that separate tasks read; together they
give the very records of the whole file's read.
"""

from __future__ import annotations

import io
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Iterator

import fsspec

from curate.curation.errors import UserError
from curate.curation.storage import reaching

FORMATS = ("jsonl", "jsonl.gz", "jsonl.zst", "parquet", "text")
_SUFFIXES = (
    (".jsonl.gz", "jsonl.gz"),
    (".json.gz", "jsonl.gz"),
    (".ndjson.gz", "jsonl.gz"),
    (".jsonl.zst", "jsonl.zst"),
    (".json.zst", "jsonl.zst"),
    (".ndjson.zst", "jsonl.zst"),
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
    (".json", "jsonl"),
    (".parquet", "parquet"),
)
# A file's position in the input, shifted into the high bits of `input_pos`.
POSITION_BITS = 40
# A plain JSONL file larger than this is read by several tasks, one per range of this many bytes.
READ_SPLIT_BYTES = 64 * 1024 * 1024
# Threads that list input URLs, and an object store's prefixes, at the same time.
LISTING_THREADS = 16


@dataclass(frozen=True)
class InputFile:
    """One input file: its full URL, its name relative to the argument that found it, its format,
    and a content token (the object's ETag, else its size and modification time)."""

    url: str
    name: str
    format: str
    size: int
    token: str = ""

    def fingerprint(self) -> dict:
        """What the manifest records of an input, and what `--resume` compares."""
        return {"url": self.url, "bytes": self.size, "token": self.token}


def content_token(info: dict) -> str:
    """An object store's ETag, else size and modification time: a change of content changes it."""
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    if etag:
        return f"etag:{str(etag).strip(chr(34))}"
    modified = info.get("mtime") or info.get("LastModified") or info.get("updated") or info.get("created")
    return f"size:{info.get('size')}:mtime:{modified}"


@dataclass(frozen=True)
class RawRecord:
    """One record as read: `obj` when it parsed, else `reason`; `raw` is what the file held."""

    origin: str
    position: int
    raw: bytes
    obj: dict | None
    reason: str | None


@dataclass(frozen=True)
class Span:
    """Bytes [start, end) of a plain file and the number of the line that holds byte `start`.

    A span reads the lines that start inside it: a line crossing `end` is read whole here, and
    the partial line at `start` belongs to the span before.
    """

    start: int
    end: int
    line: int


def detect_format(path: str) -> str:
    lowered = path.lower()
    for suffix, name in _SUFFIXES:
        if lowered.endswith(suffix):
            return name
    return "text"


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return fs.protocol in ("file", ("file", "local"))


def _unprotocol(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return path if _is_local(fs) else fs.unstrip_protocol(path)


def process_local(url: str) -> bool:
    """True for filesystems that live in one process (memory://): Ray workers cannot see them."""
    return url.startswith("memory://")


def splittable(file: InputFile) -> bool:
    """True for a plain JSONL file large enough to read in spans; a process-local file travels whole."""
    return file.format == "jsonl" and file.size > READ_SPLIT_BYTES and not process_local(file.url)


def byte_ranges(file: InputFile) -> list[tuple[int, int]]:
    """[start, end) ranges of READ_SPLIT_BYTES that cover the file, the last one shorter."""
    return [(start, min(start + READ_SPLIT_BYTES, file.size)) for start in range(0, file.size, READ_SPLIT_BYTES)]


def count_newlines(file: InputFile, start: int, end: int) -> int:
    """The newlines in bytes [start, end) of a plain file, read 1 MiB at a time."""
    count = 0
    with fsspec.open(file.url, "rb") as handle:
        handle.seek(start)
        for offset in range(start, end, 1 << 20):
            count += handle.read(min(1 << 20, end - offset)).count(b"\n")
    return count


def byte_spans(ranges: list[tuple[int, int]], newlines: list[int]) -> list[Span]:
    """The spans of `ranges`, given the newlines in every range but the last (prefix sums number the lines)."""
    lines = itertools.accumulate(newlines, initial=1)
    return [Span(start, end, line) for (start, end), line in zip(ranges, lines, strict=True)]


def _find(fs: fsspec.AbstractFileSystem, path: str, pool: ThreadPoolExecutor) -> dict[str, dict]:
    """Every file under a folder. On an object store, where one listing is a sequential chain of
    pages, each top-level prefix is listed by a thread of its own."""
    if _is_local(fs):
        return fs.find(path, detail=True)
    entries = fs.ls(path, detail=True)
    found = {entry["name"]: entry for entry in entries if entry["type"] == "file"}
    folders = [entry["name"] for entry in entries if entry["type"] == "directory"]
    for listed in pool.map(lambda folder: fs.find(folder, detail=True), folders):
        found.update(listed)
    return found


def _list_url(url: str, pool: ThreadPoolExecutor) -> list[InputFile]:
    """The files one input URL names (a file, a folder or a glob), sorted; nothing is a user error."""
    with reaching(url, "input"):  # the first look at it: protocol, credentials, bucket, network
        fs, path = fsspec.core.url_to_fs(url)
        pattern = any(char in path for char in "*?[")
        globbed = fs.glob(path, detail=True) if pattern else {}
        kind = "pattern" if pattern else "folder" if fs.isdir(path) else "file" if fs.isfile(path) else None
    if kind == "pattern":
        base = path.split("*")[0].split("?")[0].split("[")[0].rsplit("/", 1)[0]
        infos = {p: info for p, info in globbed.items() if info["type"] == "file"}
    elif kind == "folder":
        base = path.rstrip("/")
        infos = _find(fs, path, pool)
    elif kind == "file":
        base = path.rsplit("/", 1)[0]
        infos = {path: fs.info(path)}
    else:
        raise UserError(f"input not found: {url}")
    if not infos:
        raise UserError(f"input matches no files: {url}")
    files = []
    for match in sorted(infos):
        name = match[len(base) :].lstrip("/") if match.startswith(base) else match
        info = infos[match]
        files.append(InputFile(_unprotocol(fs, match), name, detect_format(match), int(info.get("size") or 0), content_token(info)))
    return files


def list_input_files(urls: list[str]) -> list[InputFile]:
    """Expand URLs into files, sorted by URL, listing the URLs (and an object store's prefixes) in parallel."""
    files: dict[str, InputFile] = {}
    with ThreadPoolExecutor(LISTING_THREADS) as url_pool, ThreadPoolExecutor(LISTING_THREADS) as prefix_pool:
        for listed in url_pool.map(lambda url: _list_url(url, prefix_pool), urls):
            for file in listed:
                files.setdefault(file.url, file)
    listed = [files[key] for key in sorted(files)]
    names = [f.name for f in listed]
    if len(set(names)) < len(names):
        # Origins (and so default ids) must tell two inputs' `part-0.jsonl` apart.
        return [replace(f, name=f.url) for f in listed]
    return listed


class _ZstdReader(io.RawIOBase):
    """Decompressed bytes of a zstd stream of one or more frames; a frame cut short raises EOFError.

    zstandard's own stream reader ends quietly at a truncated frame, which would lose the rest of
    the file without a word.
    """

    CHUNK = 1 << 20

    def __init__(self, compressed: io.BufferedIOBase):
        import zstandard

        self.compressed = compressed
        self.new_frame = zstandard.ZstdDecompressor().decompressobj
        self.frame = self.new_frame()
        self.in_frame = False
        self.pending = b""
        self.offset = 0

    def readable(self) -> bool:
        return True

    def _feed(self, chunk: bytes) -> None:
        self.pending, self.offset = b"", 0
        while chunk:
            self.in_frame = True
            self.pending += self.frame.decompress(chunk)
            if not self.frame.eof:
                return
            chunk, self.frame, self.in_frame = self.frame.unused_data, self.new_frame(), False

    def readinto(self, buffer) -> int:
        while self.offset == len(self.pending):
            chunk = self.compressed.read(self.CHUNK)
            if not chunk:
                if self.in_frame:
                    raise EOFError("zstd stream ended before the end of its frame")
                return 0
            self._feed(chunk)
        size = min(len(buffer), len(self.pending) - self.offset)
        buffer[:size] = self.pending[self.offset : self.offset + size]
        self.offset += size
        return size

    def close(self) -> None:
        self.compressed.close()
        super().close()


def _open_binary(file: InputFile) -> io.BufferedIOBase:
    """The file's decompressed bytes as a line-iterable stream."""
    if file.format == "jsonl.zst":
        return io.BufferedReader(_ZstdReader(fsspec.open(file.url, "rb").open()))
    return fsspec.open(file.url, "rb", compression="gzip" if file.format == "jsonl.gz" else None).open()


def _parse_json_line(line: bytes) -> tuple[dict | None, str | None]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    try:
        obj = json.loads(text)
    except ValueError:
        return None, "invalid_json"
    if not isinstance(obj, dict):
        return None, "not_an_object"
    return obj, None


def read_raw_records(file: InputFile, file_index: int, span: Span | None = None) -> Iterator[RawRecord]:
    """Every record of one file (of one span of it, when given), in file order. Blank JSONL lines
    hold no record and are skipped.

    A file that cannot be read whole (truncated or corrupt compression, a broken Parquet footer,
    permission denied) gives the records read before the fault and then one `unreadable_file`
    record whose origin is where reading stopped and whose raw bytes say why.
    """
    base_position = file_index << POSITION_BITS
    first_line = span.line if span else 1
    next_position = base_position + (0 if file.format in ("parquet", "text") else first_line)
    try:
        for record in _file_records(file, base_position, span):
            next_position = record.position + 1
            yield record
    except Exception as error:  # any fault of the file itself; its records so far are kept
        offset = next_position - base_position
        where = {"parquet": f":row {offset}", "text": ""}.get(file.format, f":{offset}")
        message = f"{type(error).__name__}: {error}".encode("utf-8", "replace")
        yield RawRecord(f"{file.name}{where}", next_position, message, None, "unreadable_file")


def _file_records(file: InputFile, base_position: int, span: Span | None) -> Iterator[RawRecord]:
    if file.format == "parquet":
        import pyarrow.parquet as pq

        with fsspec.open(file.url, "rb") as handle:
            row = 0
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=4096):
                for obj in batch.to_pylist():
                    raw = json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
                    yield RawRecord(f"{file.name}:row {row}", base_position + row, raw, obj, None)
                    row += 1
        return
    if file.format == "text":
        with fsspec.open(file.url, "rb") as handle:
            raw = handle.read()
        try:
            obj, reason = {"text": raw.decode("utf-8")}, None
        except UnicodeDecodeError:
            obj, reason = None, "invalid_utf8"
        yield RawRecord(file.name, base_position, raw, obj, reason)
        return
    with _open_binary(file) as handle:
        for line_number, line in _numbered_lines(handle, span):
            if not line.strip():
                continue
            line = line.rstrip(b"\r\n")
            obj, reason = _parse_json_line(line)
            yield RawRecord(f"{file.name}:{line_number}", base_position + line_number, line, obj, reason)


def _numbered_lines(handle: io.BufferedIOBase, span: Span | None) -> Iterator[tuple[int, bytes]]:
    """(number, bytes) of every line of the stream, or of those that start inside `span`."""
    if span is None:
        yield from enumerate(handle, start=1)
        return
    line_number, position = span.line, span.start
    if span.start > 0:
        # The rest of the line holding byte start-1: just its newline when a line starts at `start`.
        handle.seek(span.start - 1)
        position = span.start - 1 + len(handle.readline())
        if position > span.start:
            line_number += 1
    while position < span.end:
        line = handle.readline()
        if not line:
            return
        yield line_number, line
        position += len(line)
        line_number += 1
