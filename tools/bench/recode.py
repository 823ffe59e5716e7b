"""Re-encode a `.dcz` file's tensors with other stream codings: the same tensors, graph and metadata, so
two codings of one file are compared side by side (bytes before / after).

    python -m tools.bench.recode IN.dcz OUT.dcz [--range-coding] [--compact-container]

Without --range-coding the output is byte-identical to a file the current writer made (the check that the
re-encoding loses nothing); with it, streams take format 1.3's adaptive range coding where it is smaller; --compact-container writes format
1.4's compact container (binary tensor table, varint directory and stream headers, no padding) with an
`onnx.zlib` graph re-packed as `onnx.deflate` (SPEC 2.5.1; the same ONNX bytes), as the frontier writes them.
"""

from __future__ import annotations

import argparse
import sys
import zlib

import numpy as np

from dcz import formats
from dcz.formats.graph_codec import GRAPH_FORMAT_DEFLATE, deflate_graph


def writer_inputs(dcz) -> list:
    """The writer inputs (formats.Raw / Shared / SparseShared / Sparse) that decode to the file's tensors."""
    out = []
    for name in dcz.names:
        entry = dcz._entry(name)
        sections = entry.sections
        if entry.encoding == "raw":
            out.append(formats.Raw(name, dcz.tensor(name)))
            continue
        book = None
        if "codebook" in sections:
            raw = np.frombuffer(bytes(dcz._bytes(sections["codebook"])), dtype="<f4")
            book = raw.reshape(entry.groups, entry.codebook_size).astype(np.float32)
            book = book[0] if entry.group_rows is None else book
        if entry.encoding == "shared":
            (labels,) = dcz._decode_streams([(entry, "labels")])
            out.append(formats.Shared(name, labels.reshape(entry.shape), book, entry.label_bits, entry.group_rows))
            continue
        indptr, indices, _ = dcz.csr(name)
        rows = entry.shape[0] if entry.shape else 1
        mask = np.zeros((rows, int(np.prod(entry.shape)) // max(rows, 1)), dtype=bool)
        mask[np.repeat(np.arange(rows), np.diff(indptr)), indices] = True
        if entry.encoding == "sparse":
            out.append(formats.Sparse(name, dcz.tensor(name), mask.reshape(entry.shape), entry.gap_bits))
            continue
        (kept,) = dcz._decode_streams([(entry, "labels")])
        labels = np.zeros(mask.shape, dtype=np.int64)
        labels[mask] = kept
        out.append(
            formats.SparseShared(
                name,
                mask.reshape(entry.shape),
                labels.reshape(entry.shape),
                book,
                entry.label_bits,
                entry.gap_bits,
                entry.group_rows,
            )
        )
    return out


def recode(path: str, range_coding: bool, compact_container: bool = False) -> bytes:
    with formats.open(path) as dcz:
        metadata = {k: v for k, v in dcz.metadata.items() if not k.startswith("dcz.")}
        compact = dcz.compact or bytes(dcz._bytes(0)[:1]) != b"{"
        graph, graph_format = dcz.graph, dcz.graph_format
        if compact_container and graph_format == "onnx.zlib":
            graph, graph_format = deflate_graph(zlib.decompress(graph)), GRAPH_FORMAT_DEFLATE
        return formats.dumps(
            writer_inputs(dcz),
            graph,
            graph_format,
            metadata,
            dcz.metadata.get("dcz.huffman", True),
            compact_header=compact,
            range_coding=range_coding,
            compact_container=compact_container,
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--range-coding", action="store_true")
    parser.add_argument("--compact-container", action="store_true", help="write format 1.4 (SPEC 2.6)")
    args = parser.parse_args(argv)
    data = recode(args.source, args.range_coding, args.compact_container)
    with open(args.source, "rb") as f:
        before = len(f.read())
    with open(args.target, "wb") as f:
        f.write(data)
    print(f"{args.source}: {before:,} B -> {args.target}: {len(data):,} B ({(len(data) - before) / before:+.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
