"""Budget reports without torch: render a BudgetResult, check an existing .dcz against a budget, plot.

`budget_report(path, budget_bytes)` is what `dcz report FILE --budget N` calls: it reads the file only
(formats + numpy), says whether it fits and by how much, lists each layer's allocation and bytes, and
shows predicted against actual bytes when the file was written by `fit_budget` (its metadata records
the allocation and the predicted bytes per layer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dcz import formats
from dcz.formats.layout import DEFAULT_MAX_DENSE_BYTES


@dataclass
class LayerAllocation:
    """The setting chosen for one layer and its bytes (predicted by encoding alone, actual in the file)."""

    name: str
    layer_type: str
    shape: tuple[int, ...]
    numel: int
    encoding: str
    sparsity: float
    label_bits: int | None
    gap_bits: int | None
    predicted_bytes: int | None
    actual_bytes: int | None
    damage: float | None = None


def result_to_dict(result) -> dict[str, Any]:
    """JSON-able view of a BudgetResult."""
    uniform = None
    if result.uniform is not None:
        uniform = asdict(result.uniform)
    budget = result.budget_bytes
    out = {
        "budget_bytes": budget,
        "file_bytes": result.file_bytes,
        "fits": None if budget is None else result.file_bytes <= budget,
        "slack_bytes": None if budget is None else budget - result.file_bytes,
        "predicted_file_bytes": result.predicted_file_bytes,
        "min_file_bytes": result.min_file_bytes,
        "dense_bytes": result.dense_bytes,
        "compression": result.dense_bytes / max(result.file_bytes, 1),
        "damage": result.damage,
        "chose_uniform": result.chose_uniform,
        "accuracy": dict(result.accuracy),
        "uniform": uniform,
        "layers": [asdict(a) | {"shape": list(a.shape)} for a in result.allocation],
        "curve": [[int(b), float(d)] for b, d in result.curve],
        "uniform_curve": [[int(b), float(d)] for b, d in getattr(result, "uniform_curve", [])],
    }
    if getattr(result, "max_loss", None) is not None:  # budget.loss_target: loss measured from the written file
        out["max_loss"] = result.max_loss
        out["calib_loss"] = dict(result.figures)
        out["finetuned"] = result.finetuned
    return out


def budget_report(
    path, budget_bytes: int | None = None, *, max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES
) -> dict[str, Any]:
    """Check a .dcz against a budget from the file alone (no torch). Same keys as result_to_dict where known.
    `max_dense_bytes`: formats.open's budget of decoded bytes per tensor (only the header is read)."""
    with formats.open(path, max_dense_bytes=max_dense_bytes) as dcz:
        report = dcz.size_report()
        meta = dcz.metadata
        infos = {name: dcz.info(name) for name in dcz.names}
    onnx_to_param = dict(meta.get("compress.layers", {}) or {})
    recorded = {row[0]: row for row in meta.get("compress.budget.allocation", []) or []}
    budget = int(budget_bytes if budget_bytes is not None else meta.get("compress.budget.bytes", 0)) or None
    layers = []
    for sizes in report.tensors:
        info = infos[sizes.name]
        param = onnx_to_param.get(sizes.name, sizes.name)
        row = recorded.get(param)
        numel = int(np.prod(info.shape)) if info.shape else 1
        sparsity = 1.0 - (info.nnz / numel) if info.nnz is not None and numel else 0.0
        layers.append(
            LayerAllocation(
                name=param,
                layer_type="",
                shape=tuple(info.shape),
                numel=numel,
                encoding=info.encoding,
                sparsity=round(sparsity, 4),
                label_bits=info.label_bits,
                gap_bits=info.gap_bits,
                predicted_bytes=int(row[4]) if row else None,
                actual_bytes=int(sizes.huffman_bytes),
            )
        )
    layers.sort(key=lambda a: -(a.actual_bytes or 0))
    # The recorded curve counts the allocated layers' bytes only; everything else is fixed overhead.
    fixed = int(report.file_bytes) - sum(a.actual_bytes for a in layers if a.name in recorded)
    out = {
        "budget_bytes": budget,
        "file_bytes": int(report.file_bytes),
        "fits": None if budget is None else report.file_bytes <= budget,
        "slack_bytes": None if budget is None else budget - int(report.file_bytes),
        "overhead_bytes": int(report.header_bytes + report.graph_bytes + report.padding_bytes),
        "layers": [asdict(a) | {"shape": list(a.shape)} for a in layers],
        "curve": [[int(b) + fixed, float(d)] for b, d in meta.get("compress.budget.curve", []) or []],
        "recorded_by_fit_budget": bool(recorded),
    }
    if meta.get("compress.calib.max_loss") is not None:
        out["max_loss"] = float(meta["compress.calib.max_loss"])
    if isinstance(meta.get("compress.calib"), dict):
        out["calib"] = dict(meta["compress.calib"])
    return out


def measured_curve(points: list[tuple[int, float]], keep: int = 12) -> list[list[float]]:
    """The Pareto front (fewer bytes, less loss) of measured (tensor bytes, loss) points, `keep` of
    them spread along it, rounded (they are written into the file's metadata)."""
    front: list[tuple[int, float]] = []
    for nbytes, loss in sorted(points, key=lambda p: (p[0], p[1])):
        if not front or loss < front[-1][1]:  # not beaten by a smaller allocation
            front.append((int(nbytes), float(loss)))
    if len(front) > keep:
        front = [front[int(i)] for i in np.unique(np.round(np.linspace(0, len(front) - 1, keep)).astype(int))]
    return [[b, float(f"{loss:.4g}")] for b, loss in front]


def _fmt_bits(value) -> str:
    return "-" if value is None else str(value)


def _rows(d: dict[str, Any]) -> list[list[str]]:
    rows = []
    for a in d["layers"]:
        pred, act = a.get("predicted_bytes"), a.get("actual_bytes")
        rows.append(
            [
                a["name"],
                "x".join(map(str, a["shape"])),
                a["encoding"],
                f"{100 * a['sparsity']:.1f}%",
                _fmt_bits(a["label_bits"]),
                _fmt_bits(a["gap_bits"]),
                "-" if pred is None else str(pred),
                "-" if act is None else str(act),
            ]
        )
    return rows


HEADERS = ["layer", "shape", "encoding", "pruned", "label bits", "gap bits", "predicted B", "actual B"]


def _summary(d: dict[str, Any]) -> list[str]:
    lines = []
    if d.get("budget_bytes") is not None:
        verdict = "FITS" if d["fits"] else "DOES NOT FIT"
        lines.append(
            f"{verdict}: file {d['file_bytes']} B, budget {d['budget_bytes']} B "
            f"({'slack' if d['slack_bytes'] >= 0 else 'over by'} {abs(d['slack_bytes'])} B)"
        )
    elif d.get("max_loss") is not None:
        lines.append(f"file {d['file_bytes']} B, the smallest found within --max-loss {d['max_loss']:g}")
    else:
        lines.append(f"file {d['file_bytes']} B (no budget given or recorded)")
    if isinstance(d.get("calib"), dict):  # recorded in the file by a calibrated search
        facts = d["calib"]
        metric = {
            "accuracy": "top-1 accuracy lost (pp; held: samples broken + 1 SE)",
            "relative": "relative output error",
        }
        line = f"searched on {facts.get('rows', '?')} calibration rows, loss = {metric.get(facts.get('metric'), facts.get('metric'))}"
        if facts.get("bias_corrected"):
            line += f"; {facts['bias_corrected']} biases corrected"
        lines.append(line)
    calib = d.get("calib_loss") or {}
    if calib:
        line = f"measured on the calibration data from the written file: loss {calib['loss']:.4g}"
        if "accuracy" in calib:
            line += f" pp top-1 (broken + 1 SE: {calib['bound']:.4g}), accuracy {calib['accuracy']:.2f}% (dense {calib['dense_accuracy']:.2f}%)"
        elif "mean_cosine" in calib:
            line += f" relative output error, cosine min {calib['min_cosine']:.4f} / mean {calib['mean_cosine']:.4f}"
        lines.append(line + (" after fine-tuning" if d.get("finetuned") else ""))
    if d.get("predicted_file_bytes") is not None:
        lines.append(
            f"predicted file {d['predicted_file_bytes']} B; smallest reachable {d['min_file_bytes']} B; "
            f"dense float32 {d['dense_bytes']} B ({d['compression']:.1f}x)"
        )
    if d.get("uniform"):
        u = d["uniform"]
        lines.append(
            f"uniform baseline: pruned {100 * u['sparsity']:.1f}%, {u['label_bits']} label bits, {u['gap_bits']} gap bits, "
            f"{u['file_bytes']} B, est. damage {u['damage']:.4g} (solver {d['damage']:.4g})"
            + (" -> uniform kept" if d.get("chose_uniform") else "")
        )
        for stage, acc in (u.get("accuracy") or {}).items():
            lines.append(f"accuracy {stage}: {acc:.4f}")
    for stage, acc in (d.get("accuracy") or {}).items():
        lines.append(f"accuracy {stage}: {acc:.4f}")
    return lines


def render_text(d: dict[str, Any]) -> str:
    rows = _rows(d)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(HEADERS)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    table = [fmt.format(*HEADERS), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows]
    return "\n".join(_summary(d) + [""] + table)


def render_markdown(d: dict[str, Any]) -> str:
    lines = [f"- {line}" for line in _summary(d)] + ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(d)]
    return "\n".join(lines)


def _plot_allocation(ax, layers: list[dict]) -> None:
    """Bytes per layer in the file (horizontal bars, model order), each labelled with its setting."""
    names = [a["name"] for a in layers][::-1]
    sizes = [a.get("actual_bytes") or a.get("predicted_bytes") or 0 for a in layers][::-1]
    ax.barh(range(len(names)), sizes, color="C0")
    for i, a in enumerate(layers[::-1]):
        setting = "raw" if a.get("label_bits") is None else f"{a['label_bits']}b"
        if a.get("sparsity"):
            setting = f"{100 * a['sparsity']:.0f}% pruned, {setting}" + (
                f", {a['gap_bits']}b gaps" if a.get("gap_bits") else ""
            )
        ax.text(sizes[i], i, " " + setting, va="center", fontsize=7)
    ax.set_yticks(range(len(names)), [n[-28:] for n in names], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("bytes in the file")
    ax.set_title("allocation per layer")


def plot_rate_curve(result, path, runs: list | None = None) -> None:
    """PNG: estimated damage vs file bytes (solver path, uniform settings, budget), and, when `runs`
    (a list of BudgetResult or their dicts at several budgets) carry accuracies, accuracy vs bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    d = result if isinstance(result, dict) else result.to_dict()
    runs_d = [r if isinstance(r, dict) else r.to_dict() for r in (runs or [])]
    with_acc = [r for r in runs_d if r.get("accuracy")]
    with_layers = not with_acc and bool(d.get("layers"))
    wide = with_acc or with_layers
    fig, axes = plt.subplots(1, 2 if wide else 1, figsize=(11 if wide else 6, 4.2), squeeze=False)
    ax = axes[0][0]
    # files of a calibrated search (ONNX, or --max-loss) record MEASURED losses on the calibration data
    measured = isinstance(d.get("calib"), dict)
    if measured:
        unit = "pp top-1" if d["calib"].get("metric") == "accuracy" else "relative output error"
        pts = [(b / 1024, y) for b, y in d.get("curve") or []]
        if pts:
            ax.plot(*zip(*pts), "o-", color="C0", ms=3, label="allocations measured (Pareto front)")
        if d.get("max_loss") is not None:
            ax.axhline(d["max_loss"], color="k", ls=":", lw=1, label="--max-loss (held on samples broken + 1 SE)")
        ax.axvline(d["file_bytes"] / 1024, color="C3", lw=1.5, label="chosen (written file)")
    positive = lambda pts: [(b / 1024, y) for b, y in pts if y > 0]  # noqa: E731  (log axis: 0 = lossless)
    if not measured and positive(d.get("curve") or []):
        ax.plot(*zip(*positive(d["curve"])), "-", color="C0", label="solver (Lagrangian path)")
    if positive(d.get("uniform_curve") or []):
        ax.plot(*zip(*positive(d["uniform_curve"])), ".", color="C1", alpha=0.6, label="uniform settings")
    if d.get("budget_bytes"):
        ax.axvline(d["budget_bytes"] / 1024, color="k", ls="--", lw=1, label="budget")
    if d.get("damage") and not measured:
        ax.plot([d["file_bytes"] / 1024], [d["damage"]], "o", color="C0", label="chosen (written)")
    if d.get("uniform") and d["uniform"].get("damage"):
        ax.plot(
            [d["uniform"]["file_bytes"] / 1024], [d["uniform"]["damage"]], "s", color="C1", label="uniform (written)"
        )
    ax.set_xscale("log")
    ax.set_yscale("linear" if measured else "log")
    ax.set_xlabel("file size (KiB)")
    ax.set_ylabel(
        f"measured loss on calibration data ({unit})" if measured else "estimated damage  sum F (w - w_hat)^2"
    )
    ax.set_title("rate / damage")
    ax.legend(fontsize=8)
    if with_layers:
        _plot_allocation(axes[0][1], d["layers"])
    if with_acc:
        ax2 = axes[0][1]
        pts = sorted((r["file_bytes"], r) for r in with_acc)
        for key, label, color in (("budget+finetune", "solver + fine-tune", "C0"), ("budget", "solver", "C0")):
            xy = [(b / 1024, r["accuracy"][key]) for b, r in pts if key in r["accuracy"]]
            if xy:
                ax2.plot(*zip(*xy), "o-" if "fine" in key else "o--", color=color, label=label)
        for key, label in (("uniform+finetune", "uniform + fine-tune"), ("uniform", "uniform")):
            xy = [
                (r["uniform"]["file_bytes"] / 1024, r["uniform"]["accuracy"][key])
                for _, r in pts
                if r.get("uniform") and key in (r["uniform"].get("accuracy") or {})
            ]
            if xy:
                ax2.plot(*zip(*xy), "s-" if "fine" in key else "s--", color="C1", label=label)
        dense = [r["accuracy"]["dense"] for _, r in pts if "dense" in r["accuracy"]]
        if dense:
            ax2.axhline(dense[0], color="gray", lw=1, label="dense")
        ax2.set_xscale("log")
        ax2.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax2.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax2.set_xlabel("file size (KiB)")
        ax2.set_ylabel("accuracy")
        ax2.set_title("rate / accuracy")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
