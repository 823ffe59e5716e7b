"""Per-stage size accounting computed from the bytes of a file (SizeReport).

Stages follow Deep Compression (Han et al. 2016): dense fp32; P = pruned (CSR: float32 values,
b-bit gaps with fillers, row counts); P+Q = pruned + quantized (n-bit labels, b-bit gaps, row
counts, float32 codebook), all fixed width; P+Q+H = the bytes the tensor occupies in the file
(coded streams with their headers and Huffman tables, codebook). Header, graph and alignment
padding are reported apart, and all parts add up to the file size exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from .entry import TensorEntry
from .layout import DIR_ENTRY_SIZE, PREAMBLE_SIZE, SPARSE_ENCODINGS

_FLOAT_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class TensorSizes:
    name: str
    encoding: str
    shape: tuple
    numel: int
    nnz: int
    label_bits: int | None
    gap_bits: int | None
    dense_bytes: int
    pruned_bytes: int
    quantized_bytes: int
    huffman_bytes: int
    streams: dict = field(default_factory=dict)
    side_of: str | None = None  # a checkpoint's side tensor of outliers: the tensor it corrects (metadata)

    # bits per kept weight, as the paper's table reports them
    def _per_nnz(self, nbytes: int) -> float:
        return 8.0 * nbytes / self.nnz if self.nnz else 0.0

    def weight_bits(self) -> tuple[float, float]:
        """(P+Q, P+Q+H) bits per kept weight spent on the weights themselves."""
        if self.encoding == "raw":
            b = self._per_nnz(self.huffman_bytes)
            return b, b
        if self.encoding == "sparse":
            b = self._per_nnz(self.streams["values"]["bytes"])
            return b, b
        lab = self.streams["labels"]
        return self._per_nnz(lab["fixed_bytes"]), self._per_nnz(_coded(lab))

    def index_bits(self) -> tuple[float, float]:
        """(P+Q, P+Q+H) bits per kept weight spent on the CSR index (gaps + row counts)."""
        if self.encoding not in SPARSE_ENCODINGS:
            return 0.0, 0.0
        g, r = self.streams["gaps"], self.streams["rows"]
        return self._per_nnz(g["fixed_bytes"] + r["fixed_bytes"]), self._per_nnz(_coded(g) + _coded(r))


@dataclass(frozen=True)
class SizeReport:
    tensors: list
    header_bytes: int
    graph_bytes: int
    padding_bytes: int
    file_bytes: int

    def totals(self) -> dict:
        """Sums over the tensors; a side tensor of outliers adds its bytes but not its weights or dense size (its
        tensor's are counted once: the two store one tensor of the source checkpoint)."""
        own = [t for t in self.tensors if t.side_of is None]
        counts = {k: sum(getattr(t, k) for t in own) for k in ("numel", "nnz", "dense_bytes")}
        stages = ("pruned_bytes", "quantized_bytes", "huffman_bytes")
        return {**counts, **{k: sum(getattr(t, k) for t in self.tensors) for k in stages}}

    def to_dict(self) -> dict:
        out = {
            "tensors": [dict(asdict(t), shape=list(t.shape)) for t in self.tensors],
            "header_bytes": self.header_bytes,
            "graph_bytes": self.graph_bytes,
            "padding_bytes": self.padding_bytes,
            "file_bytes": self.file_bytes,
            "totals": self.totals(),
        }
        return out

    def rows(self) -> list[list[str]]:
        """One row of table cells per tensor and a total row (what to_text / to_markdown print)."""
        rows = []
        for t in self.tensors:
            wq, wh = t.weight_bits()
            iq, ih = t.index_bits()
            rows.append(
                [
                    t.name,
                    t.encoding,
                    f"{t.numel:,}",
                    _pct(t.nnz, t.numel),
                    f"{wq:.2f}",
                    f"{wh:.2f}",
                    f"{iq:.2f}",
                    f"{ih:.2f}",
                    _pct(t.quantized_bytes, t.dense_bytes),
                    _pct(t.huffman_bytes, t.dense_bytes),
                ]
            )
        tot = self.totals()
        rows.append(
            [
                "total (tensors)",
                "",
                f"{tot['numel']:,}",
                _pct(tot["nnz"], tot["numel"]),
                "",
                "",
                "",
                "",
                _pct(tot["quantized_bytes"], tot["dense_bytes"]),
                _pct(tot["huffman_bytes"], tot["dense_bytes"]),
            ]
        )
        return rows

    _HEAD = [
        "tensor",
        "encoding",
        "weights",
        "weights% (P)",
        "weight bits (P+Q)",
        "weight bits (P+Q+H)",
        "index bits (P+Q)",
        "index bits (P+Q+H)",
        "compress (P+Q)",
        "compress (P+Q+H)",
    ]

    def _footer(self) -> list[str]:
        tot = self.totals()
        return [
            f"dense fp32: {tot['dense_bytes']:,} B; P: {tot['pruned_bytes']:,} B; P+Q: {tot['quantized_bytes']:,} B; "
            f"P+Q+H (tensor bytes in file): {tot['huffman_bytes']:,} B",
            f"header {self.header_bytes:,} B + graph {self.graph_bytes:,} B + padding {self.padding_bytes:,} B + "
            f"tensors {tot['huffman_bytes']:,} B = file {self.file_bytes:,} B ({self._ratio_text(tot['dense_bytes'])})",
        ]

    def _ratio_text(self, dense_bytes: int) -> str:
        """The file against the float32 weights it stores apart; none stored apart (the never-larger fallback
        keeps every weight inline in the graph) has no such ratio."""
        if not dense_bytes or not self.file_bytes:
            return "no tensors stored apart: every weight is inline in the graph"
        ratio = dense_bytes / self.file_bytes
        if ratio >= 1:
            return f"{ratio:.1f}x smaller than dense fp32 weights"
        return f"{1 / ratio:.1f}x larger than its dense fp32 weights: header and graph outweigh them"

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self._HEAD) + " |", "|" + "---|" * len(self._HEAD)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows()]
        return "\n".join(lines + [""] + self._footer()) + "\n"

    def to_text(self) -> str:
        table = [self._HEAD] + self.rows()
        widths = [max(len(r[i]) for r in table) for i in range(len(self._HEAD))]
        lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in table]
        return "\n".join(lines + self._footer()) + "\n"


def _coded(stream: dict) -> int:
    """Bytes of a stream's coded form: payload + Huffman table. The 16-byte stream header is
    framing that the fixed-width form carries too, so the bits columns leave it out of both
    (it stays in huffman_bytes, which is what the file holds)."""
    return stream["payload_bytes"] + stream["table_bytes"]


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "-"


def _stream_detail(info, length: int) -> dict:
    return {
        "coding": info.coding_name,
        "symbols": info.count,
        "width": info.width,
        "bytes": length,
        "fixed_bytes": info.fixed_bytes,
        "table_bytes": info.table_bytes,
        "payload_bytes": info.payload_bytes,
    }


def tensor_sizes(e: TensorEntry, sections, streams) -> TensorSizes:
    """Stage sizes of one validated entry from its section lengths and stream headers."""
    detail = {}
    for role, idx in e.sections.items():
        length = sections[idx].length
        detail[role] = _stream_detail(streams[idx], length) if idx in streams else {"bytes": length}
    in_file = sum(d["bytes"] for d in detail.values())
    enc, numel, nnz = e.encoding, e.numel, e.nnz
    dense = numel * (4 if e.dtype in _FLOAT_DTYPES else detail.get("data", {}).get("bytes", numel * 4) // max(numel, 1))
    fixed = {r: d.get("fixed_bytes", d["bytes"]) for r, d in detail.items()}
    if enc == "raw":
        pruned = quantized = in_file
    elif enc == "sparse":
        pruned = quantized = nnz * 4 + fixed["gaps"] + fixed["rows"]
    elif enc == "shared":
        pruned = numel * 4
        quantized = fixed["labels"] + fixed["codebook"]
    else:
        pruned = nnz * 4 + fixed["gaps"] + fixed["rows"]
        quantized = fixed["labels"] + fixed["gaps"] + fixed["rows"] + fixed["codebook"]
    return TensorSizes(
        e.name,
        enc,
        tuple(e.shape),
        numel,
        nnz,
        e.label_bits,
        e.gap_bits,
        dense,
        pruned,
        quantized,
        in_file,
        detail,
    )


def build_report(
    entries, sections, streams, file_bytes: int, front_bytes: int | None = None, sides: dict | None = None
) -> SizeReport:
    """front_bytes: preamble + directory (default: the 1.0 container's 64 + 24 per section).
    sides: tensor -> its side tensor of outliers (metadata `checkpoint.outliers`, as the file says it)."""
    entries = list(entries)
    side_of = _side_tensors(sides, {e.name for e in entries})
    tensors = [replace(tensor_sizes(e, sections, streams), side_of=side_of.get(e.name)) for e in entries]
    if front_bytes is None:
        front_bytes = PREAMBLE_SIZE + DIR_ENTRY_SIZE * len(sections)
    header_bytes = front_bytes + sections[0].length
    graph_bytes = sections[1].length
    data = sum(t.huffman_bytes for t in tensors)
    padding = file_bytes - header_bytes - graph_bytes - data
    return SizeReport(tensors, header_bytes, graph_bytes, padding, file_bytes)


def _side_tensors(sides, names: set) -> dict:
    """side tensor -> its tensor, for the pairs of `sides` that name two tensors of the file (a report
    describes whatever the metadata says; checkpoint readers are the ones that refuse a bad map)."""
    if not isinstance(sides, dict):
        return {}
    pairs = [(side, name) for name, side in sides.items() if isinstance(side, str) and side != name]
    return {side: name for side, name in pairs if side in names and name in names}
