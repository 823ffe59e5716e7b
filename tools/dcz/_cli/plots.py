"""PNG plots of a compression run (matplotlib, Agg; no display, no pyplot global state).

- `weight_histograms`: the distribution of one layer's weights at each stage (dense, pruned,
  pruned + shared), as Fig. 5 of the Deep Compression paper shows them; shared weights appear as
  spikes at the centroids, which are marked.
- `threshold_sweep`: accuracy and sparsity against the pruning threshold (two y axes).
- `bytes_by_stage`: bytes per layer at the dense, P, P+Q and P+Q+H stages: stacked totals, and per
  layer on a log scale so the small compressed layers stay visible.
Every function takes plain numbers/arrays (or a formats SizeReport) and writes one PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

STAGE_COLUMNS = (
    ("dense", "dense_bytes"),
    ("P", "pruned_bytes"),
    ("P+Q", "quantized_bytes"),
    ("P+Q+H", "huffman_bytes"),
)
DPI = 110


def _figure(width: float, height: float):
    """A Figure bound to the Agg canvas, independent of any pyplot state or display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    figure.savefig(path, format="png", metadata={"Software": None})
    return path


def weight_histograms(
    stages: Mapping[str, np.ndarray],
    path: str | Path,
    title: str = "",
    codebook: np.ndarray | None = None,
    bins: int = 120,
) -> Path:
    """One histogram per stage of a layer's weights, zeros (pruned) left out and counted in the label.

    stages: ordered {"dense": w0, "pruned": w1, "pruned + shared": w2}; codebook: centroids to mark
    on the last panel (the shared stage).
    """
    arrays = {name: np.asarray(values, dtype=np.float64).ravel() for name, values in stages.items()}
    everything = np.concatenate([a[a != 0] for a in arrays.values()] or [np.zeros(1)])
    edges = np.linspace(everything.min(), everything.max(), bins + 1) if everything.size else bins
    figure = _figure(4.2 * len(arrays), 3.4)
    axes = figure.subplots(1, len(arrays), sharex=True, squeeze=False)[0]
    for index, (ax, (name, values)) in enumerate(zip(axes, arrays.items())):
        nonzero = values[values != 0]
        ax.hist(nonzero, bins=edges, color=f"C{index}", linewidth=0)
        pruned = 1 - nonzero.size / max(values.size, 1)
        distinct = np.unique(nonzero).size
        ax.set_title(
            f"{name}\n{nonzero.size:,} nonzero of {values.size:,} ({pruned:.0%} pruned), {distinct:,} distinct",
            fontsize=9,
        )
        ax.set_xlabel("weight value")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("count (zeros not shown)")
    if codebook is not None:  # a rug of short ticks under the bars: readable even with 256 centroids
        centroids = np.asarray(codebook, dtype=np.float64).ravel()
        axes[-1].vlines(
            centroids,
            0,
            0.05,
            transform=axes[-1].get_xaxis_transform(),
            color="black",
            linewidth=0.6,
            label=f"{centroids.size} centroids",
        )
        axes[-1].legend(fontsize=8, loc="upper right")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save(figure, path)


def threshold_sweep(
    thresholds: Sequence[float],
    accuracy: Sequence[float],
    sparsity: Sequence[float],
    path: str | Path,
    xlabel: str = "pruning threshold (x layer std)",
    title: str = "",
    dense_accuracy: float | None = None,
) -> Path:
    """Accuracy (left axis) and sparsity (right axis) against the threshold; both as fractions 0..1."""
    figure = _figure(6.4, 4.0)
    left = figure.subplots()
    right = left.twinx()
    left.plot(thresholds, np.asarray(accuracy) * 100, "o-", color="C0", label="accuracy")
    right.plot(thresholds, np.asarray(sparsity) * 100, "s--", color="C3", label="sparsity (weights pruned)")
    if dense_accuracy is not None:
        left.axhline(dense_accuracy * 100, color="C0", linewidth=0.8, linestyle=":", label="dense accuracy")
    left.set_xlabel(xlabel)
    left.set_ylabel("accuracy (%)", color="C0")
    right.set_ylabel("sparsity (%)", color="C3")
    right.set_ylim(0, 100)
    left.grid(alpha=0.3)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], loc="lower left", fontsize=8)
    if title:
        left.set_title(title, fontsize=10)
    figure.tight_layout()
    return _save(figure, path)


def stage_bytes(report) -> tuple[list[str], np.ndarray, int]:
    """(layer names, bytes array [layer, stage], overhead bytes) from a formats SizeReport."""
    names = [t.name for t in report.tensors]
    table = np.array(
        [[getattr(t, attribute) for _, attribute in STAGE_COLUMNS] for t in report.tensors], dtype=np.float64
    )
    overhead = report.header_bytes + report.graph_bytes + report.padding_bytes
    return names, table.reshape(len(names), len(STAGE_COLUMNS)), overhead


def bytes_by_stage(report, path: str | Path, title: str = "", max_layers: int = 12) -> Path:
    """Stacked bytes per stage (left) and per-layer bytes by stage on a log scale (right)."""
    names, table, overhead = stage_bytes(report)
    order = np.argsort(-table[:, 0])  # largest dense layers first
    shown = order[:max_layers]
    stages = [label for label, _ in STAGE_COLUMNS]
    figure = _figure(12.0, 4.6)
    stacked, per_layer = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    bottom = np.zeros(len(stages))
    for rank, layer in enumerate(shown):
        stacked.bar(stages, table[layer] / 1000, bottom=bottom / 1000, color=f"C{rank % 10}", label=names[layer])
        bottom += table[layer]
    rest = table[order[max_layers:]].sum(axis=0) if len(order) > max_layers else np.zeros(len(stages))
    stacked.bar(
        stages, (rest + overhead) / 1000, bottom=bottom / 1000, color="lightgrey", label="other (graph, header, small)"
    )
    totals = bottom + rest + overhead
    dense = table[:, 0].sum()  # the weights' float32 bytes: the same ratio as the summary's (dense / file)
    for x, total in enumerate(totals):
        stacked.annotate(
            f"{total / 1000:,.1f} KB\n{dense / total:.1f}x", (x, total / 1000), ha="center", va="bottom", fontsize=8
        )
    stacked.set_ylabel("kilobytes")
    stacked.set_ylim(0, totals.max() / 1000 * 1.18)
    stacked.set_title("whole model by stage", fontsize=10)
    stacked.legend(fontsize=7, loc="upper right")
    width = 0.8 / len(stages)
    positions = np.arange(len(shown))
    for s, label in enumerate(stages):
        per_layer.bar(positions + (s - 1.5) * width, table[shown, s], width, label=label, color=f"C{s}")
    per_layer.set_yscale("log")
    per_layer.set_xticks(positions, [names[i] for i in shown], rotation=30, ha="right", fontsize=7)
    per_layer.set_ylabel("bytes (log scale)")
    per_layer.set_title("per layer by stage", fontsize=10)
    per_layer.legend(fontsize=8)
    per_layer.grid(axis="y", alpha=0.3)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return _save(figure, path)
