"""Writing a .dcz tensor by tensor: each tensor's sections go to disk as soon as they are encoded.

`StreamWriter` holds one tensor at a time, so a checkpoint of any size is written with memory
bounded by its largest tensor. The header (section 0) must precede the data, but its size is
known only at the end: sections are written to a temporary body file in the target's folder at
offsets aligned relative to the body, then the preamble, directory, header and graph go to the
final temporary file, the body is copied after them (alignment is kept because the body starts
at a multiple of 8), and the result is fsync'ed and renamed over the target. Either the whole
file appears or nothing does; both temporary files are removed on any failure.

The bytes are those `formats.dumps` gives for the same tensors, so file identity does not
depend on which path wrote it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np

from . import codec, header, tensors
from .atomic import atomic_output
from .entry import TensorEntry, view_2d
from .errors import FormatError
from .layout import (
    CODING_CHUNKED,
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
from .writer import PRODUCER, front, stage_totals

PACK_BLOCK = 1 << 20  # symbols packed at once: a multiple of 8, so every block ends on a whole byte
COPY_BLOCK = 16 << 20


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
    head = STREAM_HEADER.pack(CODING_FIXED, label_bits, 0, 0, 0, flat.size)
    stream = bytearray(len(head) + (flat.size * label_bits + 7) // 8)
    stream[: len(head)] = head
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
    entry = TensorEntry(
        name,
        shape,
        "float32",
        "shared",
        int(flat.size),
        label_bits=int(label_bits),
        codebook_size=int(book.shape[1]),
        groups=int(book.shape[0]),
        group_rows=group_rows,
    )
    return entry, [tensors.Part("codebook", KIND_ARRAY, book.tobytes()), tensors.Part("labels", KIND_STREAM, stream)]


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


def _copy_file(src, dst, size: int) -> None:
    """Append `size` bytes of src (from its start) to dst: in the kernel (copy_file_range: no copy
    through user space; a reflink where the filesystem shares extents), else by blocks."""
    copy_range = getattr(os, "copy_file_range", None)
    done = 0
    if copy_range is not None:
        try:
            while done < size:
                n = copy_range(src.fileno(), dst.fileno(), min(size - done, 1 << 30))
                if n == 0:
                    break
                done += n
        except OSError:  # not supported between these files: copy what is left by blocks
            pass
    src.seek(done)
    dst.seek(0, os.SEEK_END)
    shutil.copyfileobj(src, dst, COPY_BLOCK)


class StreamWriter:
    """Write a .dcz at `path` one tensor at a time; `close()` (or leaving the `with`) publishes it.

    with StreamWriter(path, metadata={...}) as w:
        for t in tensors: w.add(t)           # or w.add_encoded(entry, parts) from a worker
    """

    def __init__(self, path, graph: bytes = b"", graph_format: str = "", metadata: dict | None = None, huffman=True):
        metadata = dict(metadata or {})
        header.check_metadata_keys(metadata, writer=True)
        for key, value in metadata.items():
            header.check_metadata_value(value, key)
        if not header.GRAPH_FORMAT_RE.match(graph_format):
            raise FormatError(f"graph_format must match {header.GRAPH_FORMAT_RE.pattern}, got {graph_format!r}")
        self.path = Path(path)
        self._folder = self.path.parent if str(self.path.parent) else Path(".")
        self._graph, self._graph_format, self._metadata, self._huffman = bytes(graph), graph_format, metadata, huffman
        self._entries: list[TensorEntry] = []
        self._dir: list[tuple[int, int, int, int]] = []  # (body offset, length, crc, kind) from section 2 on
        self._names: set[str] = set()
        self._totals = dict.fromkeys(("dense_bytes", "pruned_bytes", "quantized_bytes", "huffman_bytes"), 0)
        self._chunked = False
        self._pos = 0
        fd, self._body_path = tempfile.mkstemp(dir=self._folder, prefix=f".{self.path.name}.", suffix=".body")
        self._body = os.fdopen(fd, "wb")
        self._done = False

    def add(self, tensor) -> None:
        self.add_encoded(*encode(tensor, self._huffman))

    def add_encoded(self, entry: TensorEntry, parts) -> None:
        """Append one tensor already encoded (by `encode` / `encode_shared_fixed`, maybe in another process)."""
        if entry.name in self._names:
            raise FormatError(f"tensor {entry.name!r} given twice")
        self._names.add(entry.name)
        if len(self._dir) + 2 + len(parts) > MAX_SECTIONS:
            raise FormatError(f"more than {MAX_SECTIONS} sections")
        roles = {}
        local = [(KIND_HEADER, b""), (KIND_GRAPH, b"")]
        for part in parts:
            roles[part.role] = len(self._dir) + 2
            local.append((part.kind, part.data))
            self._write_section(part.kind, part.data)
            if part.kind == KIND_STREAM and part.data[:1] == bytes([CODING_CHUNKED]):
                self._chunked = True
        # stage sizes of this tensor alone: its sections renumbered from 2
        renumbered = entry.with_sections({role: i + 2 for i, role in enumerate(roles)})
        for key, value in stage_totals([renumbered], local).items():
            self._totals[key] += value
        self._entries.append(entry.with_sections(roles))

    def _write_section(self, kind: int, data: bytes) -> None:
        start = align_up(self._pos)
        if start > self._pos:
            self._body.write(bytes(start - self._pos))
        self._body.write(data)
        self._dir.append((start, len(data), zlib.crc32(data), kind))
        self._pos = start + len(data)

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
        if not self._body.closed:
            self._body.close()
        try:
            os.unlink(self._body_path)
        except FileNotFoundError:
            pass

    def _prefix(self) -> bytes:
        metadata = dict(self._metadata)
        metadata["dcz.producer"] = PRODUCER
        metadata["dcz.huffman"] = bool(self._huffman)
        metadata["dcz.sizes"] = dict(self._totals)
        head = header.dump_json(
            {"graph_format": self._graph_format, "metadata": metadata, "tensors": [e.to_json() for e in self._entries]}
        )
        if len(head) > MAX_HEADER_BYTES:
            raise FormatError(f"header of {len(head)} bytes exceeds the {MAX_HEADER_BYTES}-byte cap")
        count = 2 + len(self._dir)
        pos = align_up(PREAMBLE_SIZE + DIR_ENTRY_SIZE * count)
        directory = [DIR_ENTRY.pack(pos, len(head), zlib.crc32(head), KIND_HEADER, 0)]
        chunks = [(pos, head)]
        pos = align_up(pos + len(head))
        directory.append(DIR_ENTRY.pack(pos, len(self._graph), zlib.crc32(self._graph), KIND_GRAPH, 0))
        chunks.append((pos, self._graph))
        body_start = align_up(pos + len(self._graph))
        for offset, length, crc, kind in self._dir:
            directory.append(DIR_ENTRY.pack(body_start + offset, length, crc, kind, 0))
        end = body_start + self._pos if self._dir else pos + len(self._graph)
        dir_bytes = b"".join(directory)
        minor = 1 if self._chunked else 0
        return front(VERSION[0], minor, count, end, dir_bytes, chunks, body_start if self._dir else end)

    def _publish(self) -> None:
        self._body.flush()
        self._body.close()
        prefix = self._prefix()
        with atomic_output(self.path) as out:
            out.write(prefix)
            out.flush()
            with open(self._body_path, "rb") as body:
                _copy_file(body, out, self._pos)
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
