"""The compression report: sizes in the paper's columns, accuracy after each stage, layers kept raw.

The size table itself is `formats.SizeReport` (it knows the bytes of every stream and already
renders the paper's Tables 2-3 columns); this object wraps it with what only the compressor knows:
the metric after each stage (dense, pruned, quantized, ...) and the weights it kept raw, with the
reason. It renders as a terminal table (rich), JSON and Markdown, and can be rebuilt from a
`.dcz` alone since exports record both in the metadata (`compress.accuracy`, `compress.kept_raw`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ACCURACY_KEY = "compress.accuracy"
METRIC_KEY = "compress.metric"
KEPT_RAW_KEY = "compress.kept_raw"
SKIPPED_KEY = "compress.skipped"
# formats.SizeReport's columns, in its order, short enough for an 80-column terminal.
_COMPACT_HEAD = (
    "tensor",
    "enc",
    "weights",
    "kept\n(P)",
    "w bits\nP+Q",
    "w bits\nP+Q+H",
    "idx bits\nP+Q",
    "idx bits\nP+Q+H",
    "size\nP+Q",
    "size\nP+Q+H",
)
# Encodings named by the paper's stages they store (P = pruned, Q = quantized / shared).
_SHORT_ENCODING = {"sparse_shared": "P+Q", "sparse": "P", "shared": "Q", "raw": "raw"}


@dataclass
class Report:
    """Sizes per layer and in total (paper columns) + metric per stage + weights kept raw.

    sizes       formats.SizeReport of the `.dcz`.
    accuracies  stage -> metric value, in stage order (e.g. {"dense": 0.991, "pruned": 0.990}).
    kept_raw    weight name -> why it was stored uncompressed.
    metric      the metric's name (e.g. "top-1 accuracy").
    """

    sizes: Any
    accuracies: dict[str, float] = field(default_factory=dict)
    kept_raw: dict[str, str] = field(default_factory=dict)
    metric: str = "accuracy"

    # --- construction -----------------------------------------------------------------------------

    @classmethod
    def from_sizes(
        cls,
        sizes,
        kept_raw: Mapping[str, str] | None = None,
        accuracies: Mapping[str, float] | None = None,
        metric: str = "accuracy",
    ) -> Report:
        return cls(sizes, dict(accuracies or {}), dict(kept_raw or {}), metric)

    @classmethod
    def from_dcz(cls, source) -> Report:
        """The report of a `.dcz` (path, bytes or open `formats.DczFile`), from its metadata."""
        from dcz import formats

        if isinstance(source, (bytes, bytearray, memoryview)):
            with formats.loads(bytes(source)) as dcz:
                return cls._from_file(dcz)
        if hasattr(source, "size_report"):
            return cls._from_file(source)
        with formats.open(source) as dcz:
            return cls._from_file(dcz)

    @classmethod
    def _from_file(cls, dcz) -> Report:
        meta = dcz.metadata
        accuracies = meta.get(ACCURACY_KEY) or {}
        # compress() also records its own reasons under compress.skipped (parameter names): they win
        kept_raw = {**(meta.get(KEPT_RAW_KEY) or {}), **(meta.get(SKIPPED_KEY) or {})}
        return cls(
            dcz.size_report(),
            {str(k): float(v) for k, v in accuracies.items()},
            {str(k): str(v) for k, v in kept_raw.items()},
            str(meta.get(METRIC_KEY, "accuracy")),
        )

    # --- figures ----------------------------------------------------------------------------------

    @property
    def dense_bytes(self) -> int:
        """fp32 bytes of every tensor stored in the file (the paper's baseline)."""
        return sum(t.dense_bytes for t in self.sizes.tensors)

    @property
    def file_bytes(self) -> int:
        return self.sizes.file_bytes

    @property
    def compression(self) -> float:
        """Dense fp32 weights over the whole `.dcz` file (graph, header and padding included)."""
        return self.dense_bytes / self.file_bytes if self.file_bytes else float("nan")

    def _percent(self, value: float) -> float:
        """Accuracies are fractions (as compress()'s eval_fn returns them) unless some value exceeds 1."""
        return value if any(v > 1.0 for v in self.accuracies.values()) else value * 100.0

    def accuracy_rows(self) -> list[tuple[str, float, float | None]]:
        """(stage, value, change against the first stage) per stage."""
        first = next(iter(self.accuracies.values()), None)
        return [
            (stage, value, None if i == 0 else value - first)
            for i, (stage, value) in enumerate(self.accuracies.items())
        ]

    # --- renderings -------------------------------------------------------------------------------

    def layer_rows(self) -> list[dict[str, Any]]:
        """Per tensor, the paper's columns as numbers (Han et al. 2016, Tables 2-3)."""
        rows = []
        for t in self.sizes.tensors:
            (wq, wh), (iq, ih) = t.weight_bits(), t.index_bits()
            rows.append(
                {
                    "name": t.name,
                    "encoding": t.encoding,
                    "weights": t.numel,
                    "weights_kept": t.nnz / t.numel if t.numel else 0.0,
                    "weight_bits_pq": wq,
                    "weight_bits_pqh": wh,
                    "index_bits_pq": iq,
                    "index_bits_pqh": ih,
                    "compress_pq": t.quantized_bytes / t.dense_bytes if t.dense_bytes else 0.0,
                    "compress_pqh": t.huffman_bytes / t.dense_bytes if t.dense_bytes else 0.0,
                    "kept_raw": self.kept_raw.get(t.name),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": self.layer_rows(),
            "sizes": self.sizes.to_dict(),
            "file_bytes": self.file_bytes,
            "dense_bytes": self.dense_bytes,
            "compression": self.compression,
            "metric": self.metric,
            "accuracy": [{"stage": s, "value": v, "change": d} for s, v, d in self.accuracy_rows()],
            "kept_raw": [{"name": n, "reason": r} for n, r in self.kept_raw.items()],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def _accuracy_lines(self, markdown: bool) -> list[str]:
        if not self.accuracies:
            return []
        lines = (
            ["", f"| stage | {self.metric} | change |", "|---|---:|---:|"]
            if markdown
            else ["", f"{'stage':<16} {self.metric:>12} {'change':>10}"]
        )
        for stage, value, change in self.accuracy_rows():
            delta = "" if change is None else f"{self._percent(change):+.2f} pp"
            lines.append(
                f"| {stage} | {self._percent(value):.2f}% | {delta} |"
                if markdown
                else f"{stage:<16} {self._percent(value):>11.2f}% {delta:>10}"
            )
        return lines

    def _kept_raw_lines(self, markdown: bool) -> list[str]:
        if not self.kept_raw:
            return []
        head = ["", "Kept raw (not compressed):"]
        return head + [f"- `{n}`: {r}" if markdown else f"  {n}: {r}" for n, r in self.kept_raw.items()]

    def _summary(self) -> str:
        return (
            f"{self.dense_bytes:,} dense fp32 bytes -> {self.file_bytes:,} byte .dcz "
            f"({self.compression:.1f}x, whole file)"
        )

    def to_markdown(self) -> str:
        return (
            "\n".join([self.sizes.to_markdown().rstrip(), *self._accuracy_lines(True), *self._kept_raw_lines(True)])
            + "\n"
        )

    def to_text(self) -> str:
        return (
            "\n".join([self.sizes.to_text().rstrip(), *self._accuracy_lines(False), *self._kept_raw_lines(False)])
            + "\n"
        )

    def __str__(self) -> str:
        return self.to_text()

    def to_rich(self):
        """A rich renderable (tables + notes) for the terminal: `rich.print(report.to_rich())`."""
        from rich import box
        from rich.console import Group
        from rich.table import Table

        sizes = Table(
            title="Deep Compression, per tensor (Han et al. 2016 columns)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            pad_edge=False,
        )
        heads = _COMPACT_HEAD if len(_COMPACT_HEAD) == len(self.sizes._HEAD) else self.sizes._HEAD
        rows = [[row[0], _SHORT_ENCODING.get(row[1], row[1]), *row[2:]] for row in self.sizes.rows()]
        name_width = min(24, max(len(row[0]) for row in rows))
        for i, head in enumerate(heads):  # formats' paper columns; cells as formats renders them
            sizes.add_column(
                head,
                justify="left" if i < 2 else "right",
                overflow="ellipsis" if i else "fold",
                no_wrap=True,
                min_width=name_width if i == 0 else None,
            )
        for row in rows[:-1]:
            style = "yellow" if row[0] in self.kept_raw else None
            sizes.add_row(*row, style=style)
        sizes.add_row(*rows[-1], style="bold", end_section=True)
        parts: list[Any] = [sizes, self._summary()]
        if self.accuracies:
            stages = Table(title=f"{self.metric} after each stage", title_justify="left")
            for head in ("stage", self.metric, "change"):
                stages.add_column(head, justify="left" if head == "stage" else "right")
            for stage, value, change in self.accuracy_rows():
                stages.add_row(
                    stage, f"{self._percent(value):.2f}%", "" if change is None else f"{self._percent(change):+.2f} pp"
                )
            parts.append(stages)
        parts.extend(self._kept_raw_lines(False))
        return Group(*parts)

    def __rich__(self):
        return self.to_rich()

    def print(self, console=None) -> None:
        """Print the terminal table (rich)."""
        from rich.console import Console

        (console or Console()).print(self.to_rich())
