"""Reading a .dcz file: preamble, directory and header validated up front; tensors on demand."""

from __future__ import annotations

import mmap as _mmap
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from . import codec, container, header, table
from .compact import COMPACT_MINOR, inflate_header
from .cursor import Cursor
from .decode import decode_csr, decode_entry, decode_labels_and_codebook, stream_roles
from .entry import TensorEntry
from .errors import DenseBudgetError, FormatError
from .layout import (
    DEFAULT_MAX_DENSE_BYTES,
    DIR_ENTRY_SIZE,
    KIND_ARRAY,
    KIND_GRAPH,
    KIND_HEADER,
    KIND_NAMES,
    KIND_STREAM,
    MAGIC,
    MAX_HEADER_BYTES,
    MAX_SECTIONS,
    PREAMBLE_SIZE,
    SPARSE_ENCODINGS,
    SUPPORTED_MAJORS,
    align_up,
)

ARRAY_ROLES = ("data", "values", "codebook")
TENSORS_PER_BATCH = 64  # tensors whose decoded streams are held at once by DczFile.tensors()


@dataclass(frozen=True)
class TensorInfo:
    """What the tensor table says about one tensor."""

    name: str
    shape: tuple
    dtype: str
    encoding: str
    nnz: int
    label_bits: int | None
    gap_bits: int | None
    codebook_size: int | None
    groups: int | None


@dataclass(frozen=True)
class Section:
    index: int
    offset: int
    length: int
    kind: int


def read_version(buf) -> tuple[int, int]:
    """The magic and (major, minor) version, refusing a major version this reader does not support."""
    cur = Cursor(buf, 0, len(buf), "preamble")
    if len(buf) < len(MAGIC) or bytes(buf[: len(MAGIC)]) != MAGIC:
        raise cur.fail(f"bad magic: not a .dcz file (expected {MAGIC!r})", 0)
    cur.pos = len(MAGIC)
    major = cur.uint("u16", "major version")
    minor = cur.uint("u16", "minor version")
    if major not in SUPPORTED_MAJORS:
        supported = ", ".join(f"{m}.x" for m in SUPPORTED_MAJORS)
        raise cur.fail(f"file format version {major}.{minor} is not supported (this reader supports {supported})", 8)
    return major, minor


def read_preamble(buf) -> tuple[tuple[int, int], int]:
    """Validate the 64-byte preamble of versions 1.0-1.3: ((major, minor), section count)."""
    major, minor = read_version(buf)
    cur = Cursor(buf, 12, len(buf), "preamble")
    cur.need(PREAMBLE_SIZE - cur.pos, "rest of the 64-byte preamble")
    count = cur.uint("u32", "section count")
    file_length = cur.uint("u64", "file length")
    dir_crc = cur.uint("u32", "directory CRC32")
    flags = cur.uint("u32", "flags")
    reserved = cur.bytes(28, "reserved preamble bytes")
    crc = cur.uint("u32", "preamble CRC32")
    if crc != zlib.crc32(bytes(buf[:60])):
        raise cur.fail("preamble CRC32 mismatch", 60)
    if any(reserved):
        raise cur.fail("reserved preamble bytes must be zero", 32)
    if flags:
        raise cur.fail(f"unknown flags {flags:#x} (must be 0 in v{major}.x)", 28)
    if file_length != len(buf):
        raise cur.fail(
            f"file length field says {file_length} bytes, the file has {len(buf)}"
            + (" (truncated)" if file_length > len(buf) else " (trailing data)"),
            16,
        )
    if not 2 <= count <= MAX_SECTIONS:
        raise cur.fail(f"section count {count} outside 2..{MAX_SECTIONS}", 12)
    cur.need(DIR_ENTRY_SIZE * count, f"section directory of {count} entries")
    if zlib.crc32(bytes(buf[PREAMBLE_SIZE : PREAMBLE_SIZE + DIR_ENTRY_SIZE * count])) != dir_crc:
        raise FormatError(f"section directory at byte {PREAMBLE_SIZE}: CRC32 mismatch")
    return (major, minor), count


_DIR_ENTRY = struct.Struct("<QQIHH")  # offset, length, CRC32, kind, reserved


def read_directory(buf, count: int) -> list[Section]:
    """Validate the directory: contiguous aligned sections, zero padding, exact cover, CRCs."""
    cur = Cursor(buf, PREAMBLE_SIZE, PREAMBLE_SIZE + DIR_ENTRY_SIZE * count, "section directory")
    cur.need(DIR_ENTRY_SIZE * count, "section directory")
    sections, end = [], PREAMBLE_SIZE + DIR_ENTRY_SIZE * count
    view = memoryview(buf)
    for i, (offset, length, crc, kind, reserved) in enumerate(
        _DIR_ENTRY.iter_unpack(view[PREAMBLE_SIZE : PREAMBLE_SIZE + DIR_ENTRY_SIZE * count])
    ):
        at = PREAMBLE_SIZE + DIR_ENTRY_SIZE * i
        if reserved:
            raise cur.fail(f"section {i} reserved must be zero", at + 22)
        expected = align_up(end)
        if offset != expected:
            what = "overlaps the previous one" if offset < expected else "leaves a gap after the previous one"
            raise cur.fail(f"section {i} starts at {offset}, expected {expected}: it {what}", at)
        if expected > end:
            pad = Cursor(buf, end, min(expected, len(buf)), f"padding before section {i}")
            pad.zeros(pad.left, "padding")
        if length > len(buf) - offset:
            raise cur.fail(f"section {i} of {length} bytes at {offset} runs past the {len(buf)}-byte file", at + 8)
        want_kind = KIND_HEADER if i == 0 else KIND_GRAPH if i == 1 else None
        if (want_kind and kind != want_kind) or (not want_kind and kind not in (KIND_ARRAY, KIND_STREAM)):
            raise cur.fail(f"section {i} has kind {kind}, not allowed at this index", at + 20)
        if zlib.crc32(view[offset : offset + length]) != crc:
            raise FormatError(f"section {i} ({KIND_NAMES[kind]}) at byte {offset}: CRC32 mismatch")
        drop_pages(buf, offset, length)
        sections.append(Section(i, offset, length, kind))
        end = offset + length
    if end != len(buf):
        raise FormatError(f"file at byte {end}: {len(buf) - end} trailing bytes after the last section")
    return sections


def drop_pages(buf, start: int = 0, length: int | None = None) -> None:
    """Unmap a range of a memory-mapped file from this process (MADV_DONTNEED; the page cache keeps
    the pages and the next read maps them back): the CRC check of every section at open, and a reader
    going tensor by tensor, then keep only what they are reading resident, not the whole file."""
    if not isinstance(buf, _mmap.mmap) or not hasattr(_mmap, "MADV_DONTNEED") or buf.closed:
        return
    end = len(buf) if length is None else min(len(buf), start + length)
    lo = start - start % _mmap.PAGESIZE
    if end > lo:
        buf.madvise(_mmap.MADV_DONTNEED, lo, end - lo)


def dense_bytes(entry: TensorEntry) -> int:
    """Bytes of the tensor's decoded dense array, from what the tensor table declares."""
    return entry.numel * np.dtype(entry.dtype).itemsize


def check_dense_budget(entries: list[TensorEntry], budget, where: str) -> None:
    """Refuse a file with a tensor that would decode to more than `budget` bytes (before any decoding).

    Per tensor: DczFile decodes one tensor at a time on demand (checkpoints stream them), so one
    tensor is what a caller of formats must hold; runtime.load, which decodes them all, also caps the
    sum (runtime/model.py)."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise FormatError(f"max_dense_bytes must be a non-negative int, got {budget!r}")
    for e in entries:
        if dense_bytes(e) > budget:
            raise DenseBudgetError(dense_bytes(e), budget, e.name, where)


class DczFile:
    """A validated .dcz file; tensors are decoded on demand."""

    def __init__(self, buf, closer=None, max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES):
        self._buf = buf
        self._closer = closer
        self.version = read_version(buf)
        self.compact = self.version[1] >= container.CONTAINER_MINOR  # version 1.4: SPEC 2.6
        if self.compact:
            self._sections = [Section(i, *where) for i, where in enumerate(container.read(buf))]
            self._front_bytes = self._sections[0].offset  # preamble + directory: no padding
        else:
            _, count = read_preamble(buf)
            self._sections = read_directory(buf, count)
            self._front_bytes = PREAMBLE_SIZE + DIR_ENTRY_SIZE * count
        count = len(self._sections)
        head = self._sections[0]
        if head.length > MAX_HEADER_BYTES:
            raise FormatError(
                f"section 0 (header) at byte {head.offset}: {head.length} bytes exceed the {MAX_HEADER_BYTES}-byte cap"
            )

        def hfail(msg):
            return FormatError(f"section 0 (header) at byte {head.offset}: {msg}")

        text = self._bytes(0)
        if self.compact:  # 1.4: binary tensor table + document (SPEC 2.6.2)
            obj = table.read(bytes(text), head.offset, count, hfail)
        else:
            if self.version[1] >= COMPACT_MINOR and bytes(text[:1]) != b"{":  # 1.2: one zlib stream (SPEC 2.3.1)
                text = inflate_header(bytes(text), hfail)
            obj = header.parse_json(text, hfail)
        self.metadata, self.graph_format, entries = header.check_header(obj, count, hfail)
        check_dense_budget(entries, max_dense_bytes, f"section 0 (header) at byte {head.offset}")
        self._entries = {e.name: e for e in entries}
        self._streams: dict[int, codec.StreamInfo] = {}
        self._stream_headers: dict[int, codec.StreamHeader] = {}
        self._check_sections(entries)

    # -- validation of the tensor table against the sections
    def _check_sections(self, entries: list[TensorEntry]) -> None:
        owner: dict[int, str] = {}
        for e in entries:
            for role, idx in e.sections.items():
                if idx in owner:
                    raise self._fail(e, role, f"section {idx} is already used by {owner[idx]}")
                owner[idx] = f"tensor {e.name!r} {role}"
                want = KIND_ARRAY if role in ARRAY_ROLES else KIND_STREAM
                if self._sections[idx].kind != want:
                    raise self._fail(
                        e,
                        role,
                        f"section {idx} is a {KIND_NAMES[self._sections[idx].kind]} section, "
                        f"{role} needs {KIND_NAMES[want]}",
                    )
                if want == KIND_ARRAY:
                    self._check_array(e, role, idx)
                else:
                    self._check_stream(e, role, idx)
        unused = sorted(set(range(2, len(self._sections))) - set(owner))
        if unused:
            s = self._sections[unused[0]]
            raise FormatError(f"section {s.index} at byte {s.offset}: no tensor uses it")

    def _check_array(self, e: TensorEntry, role: str, idx: int) -> None:
        if role == "data":
            want = e.numel * np.dtype(e.dtype).itemsize
        elif role == "values":
            want = e.nnz * 4
        else:
            want = e.groups * e.codebook_size * 4
        if self._sections[idx].length != want:
            raise self._fail(e, role, f"holds {self._sections[idx].length} bytes, {want} expected")

    def _check_stream(self, e: TensorEntry, role: str, idx: int) -> None:
        cur = self._cursor(e, role)
        head = codec.read_stream_header(cur, compact=self.compact)
        info = self._streams[idx] = head.info
        self._stream_headers[idx] = head  # decoding starts at its payload, without parsing it again
        width = {"labels": e.label_bits, "gaps": e.gap_bits}.get(role)
        if width is not None and info.width != width:
            raise self._fail(e, role, f"stream width {info.width} differs from the tensor's {width} bits")
        want = {"rows": e.rows, "labels": e.nnz}.get(role)
        if want is not None and info.count != want:
            raise self._fail(e, role, f"stream holds {info.count} symbols, {want} expected")

    def _cursor(self, e: TensorEntry, role: str) -> Cursor:
        if self._buf is None:
            raise FormatError("the .dcz file is closed")
        s = self._sections[e.sections[role]]
        return Cursor(self._buf, s.offset, s.offset + s.length, f"section {s.index} (tensor {e.name!r} {role})")

    def _fail(self, e: TensorEntry, role: str | None, message: str) -> FormatError:
        if role is None:  # about the tensor as a whole: point at its first section
            role = min(e.sections, key=e.sections.get)
        s = self._sections[e.sections[role]]
        return FormatError(f"section {s.index} (tensor {e.name!r} {role}) at byte {s.offset}: {message}")

    def _bytes(self, idx: int) -> memoryview:
        if self._buf is None:
            raise FormatError("the .dcz file is closed")
        s = self._sections[idx]
        return memoryview(self._buf)[s.offset : s.offset + s.length]

    # -- public API
    @property
    def graph(self) -> bytes:
        return bytes(self._bytes(1))

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def _entry(self, name: str) -> dict:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise FormatError(f"no tensor named {name!r} in this file") from None

    def info(self, name: str) -> TensorInfo:
        e = self._entry(name)
        return TensorInfo(
            e.name,
            e.shape,
            e.dtype,
            e.encoding,
            e.nnz,
            e.label_bits,
            e.gap_bits,
            e.codebook_size,
            e.groups,
        )

    def tensor(self, name: str) -> np.ndarray:
        """The decoded dense array (a fresh copy: float32 for compressed encodings)."""
        return self._decode(self._entry(name))

    def tensors(self, names=None) -> dict[str, np.ndarray]:
        """name -> decoded dense array for `names` (default: every tensor), as `tensor()` gives each.

        Faster than one `tensor()` call per name: the Huffman streams of up to TENSORS_PER_BATCH
        tensors are decoded together (one lockstep walk over all their chunks).
        """
        entries = [self._entry(name) for name in (self.names if names is None else names)]
        out = {}
        for lo in range(0, len(entries), TENSORS_PER_BATCH):
            batch = entries[lo : lo + TENSORS_PER_BATCH]
            jobs = [(e, role) for e in batch for role in stream_roles(e)]
            symbols = self._decode_streams(jobs)
            streams: dict[str, dict] = {e.name: {} for e in batch}
            for (e, role), sym in zip(jobs, symbols):
                streams[e.name][role] = sym
            for e in batch:
                out[e.name] = self._decode(e, streams.pop(e.name))
        return out

    def csr(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr, indices, values) of a pruned tensor's 2-D view (rows = shape[0]) in CSR form,
        decoded straight from its streams: no dense array is made, so memory stays ~12 bytes per
        kept weight. Only for the `sparse` and `sparse_shared` encodings."""
        e = self._entry(name)
        if e.encoding not in SPARSE_ENCODINGS:
            raise FormatError(f"tensor {name!r} is not pruned (encoding {e.encoding}): it has no CSR form")
        roles = stream_roles(e)
        streams = dict(zip(roles, self._decode_streams([(e, role) for role in roles])))
        return decode_csr(
            e, lambda role: self._bytes(e.sections[role]), streams, lambda role, msg: self._fail(e, role, msg)
        )

    def palette(self, name: str) -> tuple[np.ndarray, np.ndarray, int]:
        """(labels (rows, cols), codebook float32 (groups, codebook_size), group_rows) of a `shared` tensor's
        2-D view, checked as decoding checks them: what a tool needs to change the codebook and keep the
        labels (compressor.tune). Element (r, c) is codebook[r // group_rows][labels[r, c]]."""
        e = self._entry(name)
        if e.encoding != "shared":
            raise FormatError(f"tensor {name!r} is not palettized (encoding {e.encoding}): it has no codebook")
        (labels,) = self._decode_streams([(e, "labels")])
        labels, book = decode_labels_and_codebook(
            e, lambda role: self._bytes(e.sections[role]), labels, lambda role, msg: self._fail(e, role, msg)
        )
        return labels.reshape(e.rows, e.cols), book, e.group_rows or e.rows

    def _decode_streams(self, jobs: list[tuple[TensorEntry, str]]) -> list[np.ndarray]:
        """The symbols of each (entry, role) stream, from the headers validated at open."""
        cursors = [self._cursor(e, role) for e, role in jobs]
        return codec.decode_streams(cursors, [self._stream_headers[e.sections[role]] for e, role in jobs])

    def _decode(self, e: TensorEntry, streams: dict | None = None) -> np.ndarray:
        if streams is None:
            roles = stream_roles(e)
            streams = dict(zip(roles, self._decode_streams([(e, role) for role in roles])))
        return decode_entry(
            e,
            section=lambda role: self._bytes(e.sections[role]),
            streams=streams,
            fail=lambda role, msg: self._fail(e, role, msg),
        )

    def size_report(self):
        from .report import build_report

        sides = self.metadata.get("checkpoint.outliers")
        return build_report(
            self._entries.values(), self._sections, self._streams, len(self._buf), self._front_bytes, sides
        )

    def drop_pages(self) -> None:
        """Unmap the memory-mapped file's pages from this process (decoded arrays stay valid: the next
        access to a view of the file maps its pages back); nothing to do for a file read into memory."""
        if self._buf is not None:
            drop_pages(self._buf)

    def close(self) -> None:
        self._buf = None
        if self._closer is not None:
            closer, self._closer = self._closer, None
            try:
                closer()
            except BufferError:  # a view is still alive somewhere: the map goes when it does
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<DczFile v{self.version[0]}.{self.version[1]} {len(self._entries)} tensors>"


def loads(buf, *, max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES) -> DczFile:
    """A DczFile over bytes already in memory (copied: later changes to `buf` do not reach it)."""
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        raise FormatError(f"loads needs bytes, got {type(buf).__name__}")
    return DczFile(bytes(buf), max_dense_bytes=max_dense_bytes)


def open_file(path, *, mmap: bool = True, max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES) -> DczFile:
    """Validate the .dcz at `path`.

    mmap=True (default) memory-maps the file read-only: pages are read when a tensor is decoded, so
    the file MUST stay unchanged while the DczFile is open (a file truncated in place makes the next
    access raise SIGBUS and kill the process; replacing it atomically, as formats.write does, is safe).
    mmap=False reads the whole file into memory once: the DczFile then never touches the file again.
    max_dense_bytes: the budget of decoded dense bytes per tensor (see check_dense_budget).
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise FormatError(f"{path}: empty file, not a .dcz")
        if not mmap:
            return DczFile(f.read(), max_dense_bytes=max_dense_bytes)
        mm = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ)
    try:
        return DczFile(mm, closer=mm.close, max_dense_bytes=max_dense_bytes)
    except DenseBudgetError as exc:
        error = DenseBudgetError(exc.declared, exc.limit, exc.tensor, exc.where)
    except FormatError as exc:
        error = FormatError(str(exc))
    except BaseException:
        _close_map(mm)
        raise
    # Raised anew, without the traceback: its frames hold views of the map, and a map with live
    # views cannot be closed (mmap raises BufferError, which would hide the FormatError).
    _close_map(mm)
    raise error


def _close_map(mm: _mmap.mmap) -> None:
    """Close the map now if no view is alive; otherwise the garbage collector unmaps it later."""
    try:
        mm.close()
    except BufferError:
        pass
