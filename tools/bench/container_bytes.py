"""Where a `.dcz` file's container bytes go, and the same tensors in format 1.4's compact container.

    python -m tools.bench.container_bytes FILE.dcz [FILE.dcz ...] [--markdown]

For each file: preamble, directory, tensor table, metadata document, alignment padding, stream headers and
graph, as written; then the file re-written with `--compact-container` (tools.bench.recode: the same tensors,
graph and user metadata, the same stream codings) and the same split. The 1.0-1.3 header's JSON is split into
its tensor table and the rest by compressing each alone the way the file does (zlib level 9 when the header is
compressed), so those two figures are estimates that add up to about the section (deflate shares nothing
between them then); every other figure is exact.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib

from dcz import formats
from dcz.formats import codec
from dcz.formats.cursor import Cursor
from dcz.formats.header import dump_json
from dcz.formats.layout import DIR_ENTRY_SIZE, PREAMBLE_SIZE
from tools.bench.recode import recode

ROWS = ("preamble", "directory", "tensor table", "document", "padding", "stream headers", "graph", "file")


def split(data: bytes) -> dict[str, int]:
    """Bytes of each container part of a valid file (ROWS)."""
    f = formats.loads(data)
    sections = f._sections
    head = bytes(data[sections[0].offset : sections[0].offset + sections[0].length])
    stream_headers = sum(
        f._stream_headers[i].payload_at - sections[i].offset - f._streams[i].table_bytes for i in f._streams
    )
    report = f.size_report()
    out = {"padding": report.padding_bytes, "stream headers": stream_headers, "graph": sections[1].length}
    if f.compact:
        cur = Cursor(data, 16, len(data), "bench")
        cur.varint("file length")
        cur.varint("section count")
        out["preamble"] = cur.pos
        out["directory"] = sections[0].offset - cur.pos
        document = _document_bytes(head)
        out["tensor table"] = len(head) - document
        out["document"] = document
    else:
        out["preamble"] = PREAMBLE_SIZE
        out["directory"] = DIR_ENTRY_SIZE * len(sections)
        text = head if head[:1] == b"{" else zlib.decompress(head)
        obj = json.loads(text)
        pack = (lambda b: b) if head[:1] == b"{" else (lambda b: zlib.compress(b, 9))
        table = len(pack(dump_json(obj["tensors"])))
        rest = len(pack(dump_json({k: v for k, v in obj.items() if k != "tensors"})))
        out["tensor table"] = round(len(head) * table / (table + rest))
        out["document"] = len(head) - out["tensor table"]
    out["file"] = len(data)
    return out


def _document_bytes(head: bytes) -> int:
    """Bytes of a 1.4 header section's document coding byte and document (the rest is the table)."""
    from dcz.formats import table

    cur = Cursor(head, 0, len(head), "bench")
    previous = b""
    for i in range(cur.varint("tensor count")):
        _, previous = table._read_record(cur, i, previous, 0, formats.FormatError)
    return len(head) - cur.pos


def compare(path: str) -> tuple[dict[str, int], dict[str, int], int]:
    """(split as written, split at 1.4, dense fp32 bytes) of the file at `path`."""
    with open(path, "rb") as f:
        data = f.read()
    with formats.open(path) as dcz:
        ranged = any(info.coding == codec.CODING_RANGE for info in dcz._streams.values())
        dense = sum(t.dense_bytes for t in dcz.size_report().tensors)
    compact = recode(path, ranged, compact_container=True)
    for name, arr in formats.loads(data).tensors().items():  # the same tensors, bit for bit
        assert formats.loads(compact).tensor(name).tobytes() == arr.tobytes(), name
    return split(data), split(compact), dense


def table_text(path: str, before: dict, after: dict, dense: int, version: str) -> str:
    lines = [
        f"{path} (dense fp32 {dense:,} B)",
        f"| part | {version} | 1.4 | saved |",
        "|---|---|---|---|",
    ]
    for row in ROWS:
        lines.append(f"| {row} | {before[row]:,} | {after[row]:,} | {before[row] - after[row]:,} |")
    lines.append(f"| stored tensors dense / file | {dense / before['file']:.1f}x | {dense / after['file']:.1f}x | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    for path in args.files:
        before, after, dense = compare(path)
        with formats.open(path) as dcz:
            version = f"{dcz.version[0]}.{dcz.version[1]}"
        print(table_text(path, before, after, dense, version) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
