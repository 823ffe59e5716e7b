"""Writing a .dcz tensor by tensor: each tensor's sections go to disk as soon as they are encoded.

`StreamWriter` holds one tensor at a time, so a checkpoint of any size is written with memory
bounded by its largest tensor. The header (section 0) must precede the data, but its size is
known only at the end. When the caller can predict where the body will start (`body_start` of the
tensors it plans to write: their entries and section lengths, before any is encoded), the body is
written in place in the output's temporary file behind a hole of that size, the kernel is asked to
write it back as it grows, and at the end only the preamble, directory, header and graph are
written into the hole. Otherwise (or when the prediction misses) the body goes to a temporary body
file at offsets aligned relative to the body and is copied behind the header at the end (alignment
is kept because the body starts at a multiple of 8). Either way the result is fsync'ed and renamed
over the target: the whole file appears or nothing does; temporary files are removed on any failure.

The bytes are those `formats.dumps` gives for the same tensors, so file identity does not
depend on which path wrote it.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np

from . import codec, header, tensors
from .atomic import AtomicFile, atomic_output
from .entry import TensorEntry, view_2d
from .errors import FormatError
from .layout import (
    ALIGN,
    CODING_FIXED,
    DIR_ENTRY,
    DIR_ENTRY_SIZE,
    KIND_ARRAY,
    KIND_GRAPH,
    KIND_HEADER,
    KIND_STREAM,
    MAX_HEADER_BYTES,
    MAX_SECTIONS,
    PREAMBLE_SIZE,
    STREAM_HEADER,
    VERSION,
    align_up,
)
from .writer import PRODUCER, front, stage_totals, stream_minor

PACK_BLOCK = 1 << 20  # symbols packed at once: a multiple of 8, so every block ends on a whole byte
COPY_BLOCK = 16 << 20
WRITEBACK_BLOCK = 64 << 20  # body bytes written in place between two starts of the kernel's writeback


def encode_shared_fixed(
    name: str, shape, labels: np.ndarray, codebook: np.ndarray, label_bits: int, group_rows, pool=None
):
    """(entry, parts) of a `shared` tensor with a fixed-width label stream, packed block by block.

    Memory stays ~1 byte per label (uint8 labels in, packed bytes out), where the general encoder
    widens labels to int64 to consider Huffman: this is the path for multi-gigabyte checkpoints.
    Each block of PACK_BLOCK labels is packed straight into its place in the stream (one buffer, no
    concatenation or copy); `pool` (an executor of threads: the compiled pack releases the GIL) packs
    the blocks in parallel, with the same bytes.
    """
    shape = tuple(int(d) for d in shape)
    rows, _ = view_2d(shape)
    book = np.ascontiguousarray(codebook, dtype="<f4")
    if book.ndim != 2 or book.shape[0] != tensors.groups_for(rows, group_rows) or book.shape[1] > 1 << label_bits:
        raise FormatError(f"tensor {name!r}: codebook shape {book.shape} does not fit {rows} rows / {label_bits} bits")
    flat = np.ascontiguousarray(labels).reshape(-1)
    if flat.size != int(np.prod(shape, dtype=np.int64)):
        raise FormatError(f"tensor {name!r}: {flat.size} labels for shape {shape}")
    head = _fixed_head(label_bits, flat.size)
    # not zero-filled (every byte is packed below): a fresh bytearray's zeroing cost as much as the packing
    stream = np.empty(len(head) + (flat.size * label_bits + 7) // 8, dtype=np.uint8)
    stream[: len(head)] = np.frombuffer(head, dtype=np.uint8)
    payload = memoryview(stream)[len(head) :]

    def pack(lo: int) -> int:  # the block's largest label; its bytes start on a whole byte (PACK_BLOCK % 8 == 0)
        block = flat[lo : lo + PACK_BLOCK]
        top = int(block.max())
        if top < book.shape[1]:
            a, b = lo * label_bits // 8, (lo * label_bits + block.size * label_bits + 7) // 8
            codec.pack_fixed_into(block, label_bits, payload[a:b])
        return top

    starts = range(0, flat.size, PACK_BLOCK)
    tops = map(pack, starts) if pool is None or len(starts) < 2 else pool.map(pack, starts)
    top = max(tops, default=0)
    if top >= book.shape[1]:
        raise FormatError(f"tensor {name!r}: label {top} >= codebook size {book.shape[1]}")
    entry = _shared_entry(name, shape, label_bits, book.shape[1], book.shape[0], group_rows)
    return entry, [tensors.Part("codebook", KIND_ARRAY, book.tobytes()), tensors.Part("labels", KIND_STREAM, stream)]


def _fixed_head(label_bits: int, count: int) -> bytes:
    return STREAM_HEADER.pack(CODING_FIXED, label_bits, 0, 0, 0, count)


def _shared_entry(name: str, shape, label_bits: int, codebook_size: int, groups: int, group_rows) -> TensorEntry:
    numel = int(np.prod(shape, dtype=np.int64))
    return TensorEntry(
        name,
        shape,
        "float32",
        "shared",
        numel,
        label_bits=int(label_bits),
        codebook_size=int(codebook_size),
        groups=int(groups),
        group_rows=group_rows,
    )


def planned_shared_fixed(name: str, shape, label_bits: int, codebook_size: int, group_rows):
    """(entry, parts) with the entry, section kinds and lengths `encode_shared_fixed` gives such a tensor,
    for `body_start`. The parts' bytes are zeros but the stream header, in anonymous maps that are never
    written beyond it: they cost no memory (a numpy array of zeros could: it asks for huge pages)."""
    shape = tuple(int(d) for d in shape)
    groups = tensors.groups_for(view_2d(shape)[0], group_rows)
    entry = _shared_entry(name, shape, label_bits, codebook_size, groups, group_rows)
    head = _fixed_head(label_bits, entry.numel)
    stream = mmap.mmap(-1, len(head) + (entry.numel * label_bits + 7) // 8)
    stream[: len(head)] = head
    book = bytes(4 * groups * codebook_size)  # a few megabytes at most
    return entry, [tensors.Part("codebook", KIND_ARRAY, book), tensors.Part("labels", KIND_STREAM, stream)]


def planned_raw(name: str, shape, dtype: str):
    """(entry, parts) as `encode(Raw(name, array of that shape and dtype))` gives them, zero bytes (see
    planned_shared_fixed)."""
    shape = tuple(int(d) for d in shape)
    entry = TensorEntry(name, shape, np.dtype(dtype).name, "raw", int(np.prod(shape, dtype=np.int64)))
    return entry, [tensors.Part("data", KIND_ARRAY, bytes(entry.numel * np.dtype(dtype).itemsize))]


def body_start(planned, graph: bytes = b"", graph_format: str = "", metadata: dict | None = None, huffman=True):
    """Where the body of a file holding the `planned` tensors ((entry, parts) in writing order) starts:
    the size of its preamble, directory, header and graph, for StreamWriter(body_at=...)."""
    layout = _Layout(graph, graph_format, dict(metadata or {}), huffman)
    for entry, parts in planned:
        layout.add(entry, parts)
    return len(layout.prefix())


def encode_sparse_flat(name: str, shape, flat: np.ndarray, values: np.ndarray, gap_bits: int, huffman: bool = True):
    """(entry, parts) of a `sparse` tensor given only its kept entries: flat indices (ascending) in
    the 2-D view and their values. The bytes are those of `encode(Sparse(...))` with the dense mask
    and values, which a multi-gigabyte tensor with a few kept entries cannot afford."""
    shape = tuple(int(d) for d in shape)
    rows, cols = view_2d(shape)
    flat = np.asarray(flat, dtype=np.int64).reshape(-1)
    values = np.asarray(values).reshape(-1)
    numel = rows * cols
    if flat.size != values.size:
        raise FormatError(f"tensor {name!r}: {flat.size} indices for {values.size} values")
    if flat.size and (int(flat[0]) < 0 or int(flat[-1]) >= numel or np.any(flat[1:] <= flat[:-1])):
        raise FormatError(f"tensor {name!r}: kept indices must be ascending and within 0..{numel - 1}")
    row_counts, gaps, _ = tensors.csr_streams_of(flat, rows, cols, gap_bits)
    entry = TensorEntry(name, shape, "float32", "sparse", int(flat.size), gap_bits=int(gap_bits))
    parts = [
        tensors.Part("rows", KIND_STREAM, tensors.rows_stream(row_counts, huffman, None)),
        tensors.Part("gaps", KIND_STREAM, codec.encode_stream(gaps, gap_bits, huffman, None)),
        tensors.Part("values", KIND_ARRAY, values.astype("<f4").tobytes()),
    ]
    return entry, parts


def encode(tensor, huffman: bool = True, chunk_symbols: int | None = None):
    """(entry, parts) of one formats tensor (Raw, Sparse, Shared, SparseShared), as formats.write encodes it."""
    return tensors.encode_tensor(tensor, huffman, chunk_symbols)


def _copy_file(src, dst, start: int, size: int) -> None:
    """Append `size` bytes of src from offset `start` (its last bytes) to dst: in the kernel
    (copy_file_range: no copy through user space; a reflink where the filesystem shares extents),
    else by blocks."""
    copy_range = getattr(os, "copy_file_range", None)
    done = 0
    if copy_range is not None:
        try:
            while done < size:
                n = copy_range(src.fileno(), dst.fileno(), min(size - done, 1 << 30), start + done)
                if n == 0:
                    break
                done += n
        except OSError:  # not supported between these files: copy what is left by blocks
            pass
    src.seek(start + done)
    dst.seek(0, os.SEEK_END)
    shutil.copyfileobj(src, dst, COPY_BLOCK)


class _Layout:
    """What the front of a file depends on: the tensor entries, the sections' kinds and lengths at
    their aligned body offsets, the stage totals. Shared by the writer and by `body_start`."""

    def __init__(self, graph: bytes, graph_format: str, metadata: dict, huffman: bool):
        self.graph, self.graph_format, self.metadata, self.huffman = bytes(graph), graph_format, metadata, huffman
        self.entries: list[TensorEntry] = []
        self.dir: list[tuple[int, int, int, int]] = []  # (body offset, length, crc, kind) from section 2 on
        self.names: set[str] = set()
        self.totals = dict.fromkeys(("dense_bytes", "pruned_bytes", "quantized_bytes", "huffman_bytes"), 0)
        self.codings: set[int] = set()  # stream codings used: they set the file's minor version
        self.pos = 0  # body bytes so far

    def add(self, entry: TensorEntry, parts, crc=None) -> list[int]:
        """Account for one tensor's sections; returns their body offsets (crc: a function of each part's
        bytes, None when only the front's size matters)."""
        if entry.name in self.names:
            raise FormatError(f"tensor {entry.name!r} given twice")
        self.names.add(entry.name)
        if len(self.dir) + 2 + len(parts) > MAX_SECTIONS:
            raise FormatError(f"more than {MAX_SECTIONS} sections")
        roles, starts = {}, []
        local = [(KIND_HEADER, b""), (KIND_GRAPH, b"")]
        for part in parts:
            roles[part.role] = len(self.dir) + 2
            local.append((part.kind, part.data))
            start = align_up(self.pos)
            self.dir.append((start, len(part.data), crc(part.data) if crc else 0, part.kind))
            self.pos = start + len(part.data)
            starts.append(start)
            if part.kind == KIND_STREAM and len(part.data):  # (a numpy array has no truth value)
                self.codings.add(int(part.data[0]))
        # stage sizes of this tensor alone: its sections renumbered from 2
        renumbered = entry.with_sections({role: i + 2 for i, role in enumerate(roles)})
        for key, value in stage_totals([renumbered], local).items():
            self.totals[key] += value
        self.entries.append(entry.with_sections(roles))
        return starts

    def prefix(self) -> bytes:
        """Preamble, directory, header and graph, zero-padded to where the body starts."""
        metadata = dict(self.metadata)
        metadata["dcz.producer"] = PRODUCER
        metadata["dcz.huffman"] = bool(self.huffman)
        metadata["dcz.sizes"] = dict(self.totals)
        head = header.dump_json(
            {"graph_format": self.graph_format, "metadata": metadata, "tensors": [e.to_json() for e in self.entries]}
        )
        if len(head) > MAX_HEADER_BYTES:
            raise FormatError(f"header of {len(head)} bytes exceeds the {MAX_HEADER_BYTES}-byte cap")
        count = 2 + len(self.dir)
        pos = align_up(PREAMBLE_SIZE + DIR_ENTRY_SIZE * count)
        directory = [DIR_ENTRY.pack(pos, len(head), zlib.crc32(head), KIND_HEADER, 0)]
        chunks = [(pos, head)]
        pos = align_up(pos + len(head))
        directory.append(DIR_ENTRY.pack(pos, len(self.graph), zlib.crc32(self.graph), KIND_GRAPH, 0))
        chunks.append((pos, self.graph))
        body_start = align_up(pos + len(self.graph))
        for offset, length, crc, kind in self.dir:
            directory.append(DIR_ENTRY.pack(body_start + offset, length, crc, kind, 0))
        end = body_start + self.pos if self.dir else pos + len(self.graph)
        dir_bytes = b"".join(directory)
        minor = stream_minor(self.codings, False)
        return front(VERSION[0], minor, count, end, dir_bytes, chunks, body_start if self.dir else end)


class StreamWriter:
    """Write a .dcz at `path` one tensor at a time; `close()` (or leaving the `with`) publishes it.

    with StreamWriter(path, metadata={...}) as w:
        for t in tensors: w.add(t)           # or w.add_encoded(entry, parts) from a worker

    body_at: where the body is predicted to start (`body_start` of the tensors to come): the body is
    then written in place and nothing is copied at the end, unless the prediction misses.
    """

    def __init__(
        self,
        path,
        graph: bytes = b"",
        graph_format: str = "",
        metadata: dict | None = None,
        huffman=True,
        body_at: int | None = None,
    ):
        metadata = dict(metadata or {})
        header.check_metadata_keys(metadata, writer=True)
        for key, value in metadata.items():
            header.check_metadata_value(value, key)
        if not header.GRAPH_FORMAT_RE.match(graph_format):
            raise FormatError(f"graph_format must match {header.GRAPH_FORMAT_RE.pattern}, got {graph_format!r}")
        if body_at is not None and (isinstance(body_at, bool) or body_at < PREAMBLE_SIZE or body_at % ALIGN):
            raise FormatError(f"body_at must be a multiple of {ALIGN} of at least {PREAMBLE_SIZE}, got {body_at!r}")
        self.path = Path(path)
        self._folder = self.path.parent if str(self.path.parent) else Path(".")
        self._layout = _Layout(graph, graph_format, metadata, huffman)
        self._huffman = huffman
        self._body_at = body_at
        self._out = None  # the output's temp file when the body is written in place
        if body_at is None:
            fd, self._body_path = tempfile.mkstemp(dir=self._folder, prefix=f".{self.path.name}.", suffix=".body")
            self._body = os.fdopen(fd, "wb")
        else:
            self._out = AtomicFile(self.path)
            self._body_path, self._body = self._out.temp, self._out.file
            self._body.seek(body_at)
        self._written_back = 0  # body bytes whose writeback has been started
        self._done = False

    def add(self, tensor) -> None:
        self.add_encoded(*encode(tensor, self._huffman))

    def add_encoded(self, entry: TensorEntry, parts) -> None:
        """Append one tensor already encoded (by `encode` / `encode_shared_fixed`, maybe in another process)."""
        end = self._layout.pos
        starts = self._layout.add(entry, parts, zlib.crc32)
        for start, part in zip(starts, parts):
            if start > end:
                self._body.write(bytes(start - end))
            self._body.write(part.data)
            end = start + len(part.data)
        if self._out is not None and end - self._written_back >= WRITEBACK_BLOCK:
            self._start_writeback(end)

    def _start_writeback(self, end: int) -> None:
        """Have the kernel start writing the body's bytes so far to disk (in place only), so that the
        fsync at the end waits for the last few megabytes instead of the whole body: on Linux,
        POSIX_FADV_DONTNEED starts the writeback of the range's dirty pages (and drops its clean ones,
        which are never read again)."""
        advise = getattr(os, "posix_fadvise", None)
        if advise is None:
            return
        self._body.flush()
        advise(
            self._body.fileno(), self._body_at + self._written_back, end - self._written_back, os.POSIX_FADV_DONTNEED
        )
        self._written_back = end

    def close(self) -> None:
        """Assemble and publish the file atomically."""
        if self._done:
            return
        try:
            self._publish()
        finally:
            self._cleanup()

    def abort(self) -> None:
        """Drop everything written so far; the target is left as it was."""
        self._cleanup()

    def _cleanup(self) -> None:
        self._done = True
        if self._out is not None:
            self._out.discard()
            return
        if not self._body.closed:
            self._body.close()
        try:
            os.unlink(self._body_path)
        except FileNotFoundError:
            pass

    def _publish(self) -> None:
        prefix = self._layout.prefix()
        if self._out is not None and len(prefix) == self._body_at:
            self._body.seek(0)
            self._body.write(prefix)
            self._out.publish()
            return
        self._body.flush()
        self._body.close()
        with atomic_output(self.path) as out:
            out.write(prefix)
            out.flush()
            with open(self._body_path, "rb") as body:
                _copy_file(body, out, self._body_at or 0, self._layout.pos)
            # removed before the output's fsync: its pages not yet on disk are dropped, not written
            # back while the fsync waits for the disk
            os.unlink(self._body_path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self.abort()
