"""Writing a .dcz file: sections assembled at aligned offsets, then an atomic write."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from . import codec, container, header, table, tensors
from .atomic import atomic_write_bytes
from .compact import COMPACT_MINOR, deflate_header
from .entry import TensorEntry
from .errors import FormatError
from .layout import (
    CODING_CHUNKED,
    CODING_RANGE,
    DIR_ENTRY,
    DIR_ENTRY_SIZE,
    KIND_GRAPH,
    KIND_HEADER,
    KIND_STREAM,
    MAGIC,
    MAX_HEADER_BYTES,
    MAX_SECTIONS,
    PREAMBLE,
    PREAMBLE_SIZE,
    RANGE_MINOR,
    VERSION,
    align_up,
)

PRODUCER = "dcz-formats 0.1.0"


def file_version(sections: list[tuple[int, bytes]], compact_header: bool = False) -> tuple[int, int]:
    """The oldest version that describes these sections: 1.3 if a stream uses the range coding (SPEC 3.4.2),
    else 1.2 with a compressed header (SPEC 2.3.1), else 1.1 if a stream uses the chunked coding (SPEC 3.4.1),
    else 1.0, so files without them stay readable by older readers."""
    codings = {data[0] for kind, data in sections if kind == KIND_STREAM and data}
    return (VERSION[0], stream_minor(codings, compact_header))


def stream_minor(codings: set[int], compact_header: bool) -> int:
    """The minor version of a file whose streams use `codings` (first bytes of their sections)."""
    if CODING_RANGE in codings:
        return RANGE_MINOR
    if compact_header:
        return COMPACT_MINOR
    return 1 if CODING_CHUNKED in codings else 0


def assemble(sections: list[tuple[int, bytes]], compact_header: bool = False) -> bytes:
    """Preamble + directory + sections at aligned offsets, zero padding between."""
    first = align_up(PREAMBLE_SIZE + DIR_ENTRY_SIZE * len(sections))
    directory, chunks, pos = [], [], first
    for kind, data in sections:
        pos = align_up(pos)
        directory.append(DIR_ENTRY.pack(pos, len(data), zlib.crc32(data), kind, 0))
        chunks.append((pos, data))
        pos += len(data)
    dir_bytes = b"".join(directory)
    major, minor = file_version(sections, compact_header)
    return front(major, minor, len(sections), pos, dir_bytes, chunks, pos)


def front(major: int, minor: int, count: int, end: int, dir_bytes: bytes, chunks, size: int) -> bytes:
    """`size` bytes: the preamble (declaring `count` sections and a file of `end` bytes) with its CRC, the
    directory, then each (offset, bytes) of `chunks` in place; the rest zero (alignment padding)."""
    pre = PREAMBLE.pack(MAGIC, major, minor, count, end, zlib.crc32(dir_bytes), 0, bytes(28))
    out = bytearray(size)
    out[:PREAMBLE_SIZE] = pre + struct.pack("<I", zlib.crc32(pre))
    out[PREAMBLE_SIZE : PREAMBLE_SIZE + len(dir_bytes)] = dir_bytes
    for at, data in chunks:
        out[at : at + len(data)] = data
    return bytes(out)


def dumps(
    tensor_list,
    graph: bytes = b"",
    graph_format: str = "onnx",
    metadata: dict | None = None,
    huffman: bool = True,
    chunk_symbols: int | None = None,
    compact_header: bool | None = False,
    range_coding: bool = False,
    compact_container: bool = False,
) -> bytes:
    """The bytes of a .dcz file holding `tensor_list` (see formats.write)."""
    if chunk_symbols is not None and (not isinstance(chunk_symbols, int) or not 0 <= chunk_symbols < 1 << 32):
        raise FormatError(f"chunk_symbols must be None, 0 or a positive 32-bit int, got {chunk_symbols!r}")
    metadata = dict(metadata or {})
    header.check_metadata_keys(metadata, writer=True)
    for key, value in metadata.items():
        header.check_metadata_value(value, key)
    if not isinstance(graph_format, str) or not header.GRAPH_FORMAT_RE.match(graph_format):
        raise FormatError(f"graph_format must match {header.GRAPH_FORMAT_RE.pattern}, got {graph_format!r}")
    if not isinstance(graph, (bytes, bytearray, memoryview)):
        raise FormatError(f"graph must be bytes, got {type(graph).__name__}")
    sections: list[tuple[int, bytes]] = [(KIND_HEADER, b""), (KIND_GRAPH, bytes(graph))]
    entries, seen = [], set()
    for t in tensor_list:
        entry, parts = tensors.encode_tensor(t, huffman, chunk_symbols, range_coding)
        if entry.name in seen:
            raise FormatError(f"tensor {entry.name!r} given twice")
        seen.add(entry.name)
        roles = {}
        for part in sorted(parts, key=lambda part: tensors.ROLES[entry.encoding].index(part.role)):
            roles[part.role] = len(sections)  # in ROLES order: a 1.4 table implies the indexes (SPEC 2.6.3)
            data = codec.compact_stream(part.data) if compact_container and part.kind == KIND_STREAM else part.data
            sections.append((part.kind, data))
        entries.append(entry.with_sections(roles))
    if len(sections) > MAX_SECTIONS:
        raise FormatError(f"{len(sections)} sections exceed the limit {MAX_SECTIONS}")
    metadata["dcz.producer"] = PRODUCER
    metadata["dcz.huffman"] = bool(huffman)
    if compact_container:  # version 1.4 (SPEC 2.6): binary table, compact directory and stream headers
        # dcz.sizes left out: the reader derives the same totals from the sections (SPEC 6); 32 B of a LeNet file
        sections[0] = (KIND_HEADER, table.encode(entries, graph_format, metadata))
        if len(sections[0][1]) > MAX_HEADER_BYTES:
            raise FormatError(f"header of {len(sections[0][1])} bytes exceeds the {MAX_HEADER_BYTES}-byte cap")
        return container.pack(VERSION[0], container.CONTAINER_MINOR, sections)
    metadata["dcz.sizes"] = stage_totals(entries, sections)
    doc = {"graph_format": graph_format, "metadata": metadata, "tensors": [e.to_json() for e in entries]}
    head = header.dump_json(doc)
    if len(head) > MAX_HEADER_BYTES:
        raise FormatError(f"header of {len(head)} bytes exceeds the {MAX_HEADER_BYTES}-byte cap")
    compact_header = _compact_header_chosen(compact_header, head, sections)
    sections[0] = (KIND_HEADER, deflate_header(head) if compact_header else head)
    return assemble(sections, compact_header)


# compact_header=None compresses the header when that saves at least this share of the file
COMPACT_HEADER_MIN_SAVING = 0.01


def _compact_header_chosen(compact_header: bool | None, head: bytes, sections: list[tuple[int, bytes]]) -> bool:
    """compact_header as given, or for None: whether zlib'ing the header saves >= 1% of the file (small
    models with many tensors, whose JSON header is a tenth of the file; never worth a 1.2 file otherwise)."""
    if compact_header is not None:
        return bool(compact_header)
    total = len(head) + sum(len(data) for _, data in sections[1:])
    return len(head) - len(deflate_header(head)) >= COMPACT_HEADER_MIN_SAVING * total


def stage_totals(entries: list[TensorEntry], sections: list[tuple[int, bytes]]) -> dict:
    """Per-stage byte totals over all tensors (dense, P, P+Q, P+Q+H), as SizeReport computes them."""
    from .cursor import Cursor
    from .reader import Section
    from .report import tensor_sizes

    secs = [Section(i, 0, len(data), kind) for i, (kind, data) in enumerate(sections)]
    streams = {
        i: codec.read_stream_header(Cursor(data, 0, len(data), f"section {i}")).info
        for i, (kind, data) in enumerate(sections)
        if kind == KIND_STREAM
    }
    totals = dict.fromkeys(("dense_bytes", "pruned_bytes", "quantized_bytes", "huffman_bytes"), 0)
    for e in entries:
        sizes = tensor_sizes(e, secs, streams)
        for key in totals:
            totals[key] += getattr(sizes, key)
    return totals


def write(
    path,
    tensor_list,
    graph: bytes = b"",
    graph_format: str = "onnx",
    metadata: dict | None = None,
    huffman: bool = True,
    chunk_symbols: int | None = None,
    compact_header: bool | None = False,
    range_coding: bool = False,
    compact_container: bool = False,
):
    """Write a .dcz file atomically; returns its SizeReport.

    compact_container: version 1.4 (SPEC 2.6): a binary tensor table instead of JSON entries, the metadata
    deflated with a preset dictionary, varint directory and stream headers, no padding, one CRC32: ~1 KB less
    for a LeNet (a tenth of a 100x file); older readers refuse such a file, so only when asked. compact_header
    and the version it implies are then moot (the 1.4 header is always compact).

    range_coding: per stream of byte symbols (at most 65,536 of them), also try the adaptive binary
    range coding (version 1.3, SPEC 3.4.2) and keep it where it is smaller than fixed width and
    Huffman: 4-5% of a LeNet frontier file; older readers refuse such streams, so only when asked.

    compact_header: store the header section zlib-compressed (version 1.2, SPEC 2.3.1): ~1.3 KB
    less for a LeNet, which matters only for very small files; None: only when that saves at least
    1% of the file (otherwise the file stays readable by 1.0 / 1.1 readers).

    chunk_symbols: None lets the writer index long Huffman streams in chunks (version 1.1, decoded
    ~2x faster; SPEC 3.4.1); 0 never does (a version-1.0 file); n > 0 chunks every Huffman stream
    longer than n symbols at n symbols per chunk.

    The bytes go to a temporary file in the target folder, are fsync'ed, then renamed over the
    target (os.replace), so a reader or a crash never sees a partial file; an existing target's
    permission bits are kept.
    """
    from .reader import loads

    data = dumps(
        tensor_list,
        graph,
        graph_format,
        metadata,
        huffman,
        chunk_symbols,
        compact_header,
        range_coding,
        compact_container,
    )
    atomic_write_bytes(Path(path), data)
    return loads(data).size_report()
