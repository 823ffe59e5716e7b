"""`dcz report FILE [--budget 100KB]`: does the model fit, which layers hold the bytes, what-if table."""

from __future__ import annotations

import json
import math
import sys

from dcz._cli.commands._common import add_command, add_max_dense_bytes, dense_budget, open_dcz, output_path, size_arg
from dcz._cli.errors import CliError, require
from dcz._cli.sizes import format_size

DESCRIPTION = """\
Answer a size budget from the .dcz file alone: whether the file fits and by how much, which layers
hold the bytes, and a what-if table of label bits x sparsity.

The what-if cells are ESTIMATES from a formula (fixed-width labels and gaps at the given density,
scaled by the Huffman gain this file already shows per layer), not real encodings: recompress
(dcz compress, or `--budget` in the compressor) to get exact sizes.
Sizes: 100KB = 100,000 bytes, 256KiB = 262,144 bytes; a bare number is bytes.

examples:
  dcz report lenet.dcz --budget 32KB
  dcz report lenet.dcz --budget 256KiB --check    # exit code 1 if it does not fit"""

BITS_GRID = (2, 3, 4, 5, 6, 8)
SPARSITY_GRID = (0.5, 0.75, 0.9, 0.95, 0.98)


def register(subparsers, common) -> None:
    parser = add_command(
        subparsers, common, "report", "check a .dcz against a byte budget; what-if table", DESCRIPTION, run
    )
    parser.add_argument("file", help="the .dcz file")
    parser.add_argument("--budget", type=size_arg, metavar="SIZE", help="byte budget, e.g. 100KB, 1.5MB, 256KiB, 64k")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="layers to list by bytes (default 10)")
    parser.add_argument("--check", action="store_true", help="exit with code 1 when the file does not fit the budget")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument(
        "--curve", metavar="PNG", help="files written with 'compress --budget': plot the rate / damage curve"
    )
    add_max_dense_bytes(parser)


# --- the what-if estimate --------------------------------------------------------------------


def is_compressible(t) -> bool:
    """Tensors a recompression would touch: already compressed ones and raw float matrices/kernels."""
    return t.encoding != "raw" or (len(t.shape) >= 2 and t.numel >= 256)


def expected_fillers(density: float, gap_bits: int) -> float:
    """Fillers per kept entry with b-bit gaps when entries fall at random (geometric gaps)."""
    if density >= 1.0:
        return 0.0
    step = 2**gap_bits - 1
    miss = (1.0 - density) ** step
    return miss / (1.0 - miss)


def estimate_tensor_bytes(t, density: float, label_bits: int | None) -> float:
    """Estimated bytes of one tensor pruned to `density` with `label_bits`-bit labels (see DESCRIPTION);
    label_bits None = not shared (float32 values)."""
    numel = t.numel
    rows = t.shape[0] if len(t.shape) > 1 else 1
    cols = max(1, numel // rows)
    kept = math.ceil(density * numel)
    bits = kept * 32 if label_bits is None else kept * label_bits + 32 * 2**label_bits
    if density < 1.0:
        gap_bits = t.gap_bits or 5
        bits += kept * (1 + expected_fillers(density, gap_bits)) * gap_bits
        bits += rows * max(1, math.ceil(math.log2(cols + 1)))
    huffman_gain = t.huffman_bytes / t.quantized_bytes if t.encoding != "raw" and t.quantized_bytes else 1.0
    return bits / 8 * min(1.0, huffman_gain)


def fixed_bytes(report) -> int:
    """Bytes no recompression changes: header, graph, padding and the small raw tensors."""
    kept_raw = sum(t.huffman_bytes for t in report.tensors if not is_compressible(t))
    return report.header_bytes + report.graph_bytes + report.padding_bytes + kept_raw


def current_density(t) -> float:
    return t.nnz / t.numel if t.numel else 1.0


def estimate_file_bytes(report, sparsity: float | None, label_bits: int | None) -> int:
    """Whole-file estimate; None keeps each layer's present sparsity / bits."""
    total = fixed_bytes(report)
    for t in report.tensors:
        if not is_compressible(t):
            continue
        density = current_density(t) if sparsity is None else 1.0 - sparsity
        bits = t.label_bits if label_bits is None else label_bits  # as now: unshared tensors stay float32
        total += estimate_tensor_bytes(t, density, bits)
    return int(round(total))


def what_if_grid(report) -> dict:
    """{sparsity label: {bits label: estimated bytes}}, with an 'as now' row and column."""
    sparsities = [None, *SPARSITY_GRID]
    bits = [None, *BITS_GRID]
    label = lambda value, fmt: "as now" if value is None else fmt.format(value)  # noqa: E731
    return {
        label(s, "{:.0%}"): {label(b, "{} bits"): estimate_file_bytes(report, s, b) for b in bits} for s in sparsities
    }


# --- rendering ---------------------------------------------------------------------------------


def verdict(file_bytes: int, budget: int) -> str:
    if file_bytes <= budget:
        spare = budget - file_bytes
        return f"FITS: {format_size(file_bytes)} within the budget of {format_size(budget)}; {spare:,} B ({spare / budget:.1%}) to spare"
    over = file_bytes - budget
    return f"DOES NOT FIT: {format_size(file_bytes)} is {over:,} B ({over / budget:.1%}) over the budget of {format_size(budget)}"


def holders(report) -> list[tuple[str, str, int]]:
    """(name, what, bytes) for every part of the file, largest first."""
    parts = [(t.name, t.encoding, t.huffman_bytes) for t in report.tensors]
    parts += [("(graph)", "onnx", report.graph_bytes), ("(header)", "", report.header_bytes)]
    parts += [("(padding)", "alignment", report.padding_bytes)]
    return sorted(parts, key=lambda part: -part[2])


def holders_table(report, top: int) -> str:
    lines = [f"{'bytes held by':<32} {'encoding':<14} {'bytes':>12} {'share':>7} {'cumul.':>7}"]
    cumulative = 0
    parts = holders(report)
    for name, what, size in parts[:top]:
        cumulative += size
        share, cum = size / report.file_bytes, cumulative / report.file_bytes
        lines.append(f"{name[:32]:<32} {what:<14} {size:>12,} {share:>7.1%} {cum:>7.1%}")
    if len(parts) > top:
        rest = report.file_bytes - cumulative
        lines.append(
            f"{f'({len(parts) - top} more)':<32} {'':<14} {rest:>12,} {rest / report.file_bytes:>7.1%} {'100.0%':>7}"
        )
    return "\n".join(lines)


def grid_table(grid: dict, budget: int | None) -> str:
    columns = list(next(iter(grid.values())))
    header = "sparsity / labels"
    lines = [f"{header:<18}" + "".join(f"{column:>12}" for column in columns)]
    for row, cells in grid.items():
        rendered = []
        for size in cells.values():
            mark = "" if budget is None else (" ok" if size <= budget else "   ")
            rendered.append(f"{size / 1000:.1f}KB{mark}".rjust(12))
        lines.append(f"{row:<18}" + "".join(rendered))
    return "\n".join(lines)


def solver_report(path, budget: int | None, curve_png: str | None, dense: dict[str, int]):
    """The budget solver's own view (allocation per layer, predicted vs actual bytes) when the file
    was written by `dcz compress --budget`; None for other files."""
    budget_report = require("dcz.compressor.budget.report", "reading the budget allocation")
    document = budget_report.budget_report(path, budget, **dense)
    if not document.get("recorded_by_fit_budget"):
        if curve_png:
            raise CliError(f"{path} was not written with --budget: it has no rate curve", "drop --curve")
        return None
    if curve_png:
        budget_report.plot_rate_curve(document, output_path(curve_png, "PNG"))
    return document


def run(args) -> int:
    with open_dcz(args.file, args) as dcz:
        report = dcz.size_report()
    allocation = solver_report(args.file, args.budget, args.curve, dense_budget(args))
    # no --budget: a file written by 'compress --budget' is checked against the budget it recorded
    budget = args.budget if args.budget is not None else (allocation or {}).get("budget_bytes")
    grid = what_if_grid(report)
    fits = budget is None or report.file_bytes <= budget
    if args.json:
        document = {
            "file": str(args.file),
            "file_bytes": report.file_bytes,
            "budget": budget,
            "fits": fits if budget is not None else None,
            "over_by": max(0, report.file_bytes - budget) if budget is not None else None,
            "holders": [{"name": n, "encoding": e, "bytes": b} for n, e, b in holders(report)],
            "what_if_estimated_bytes": grid,
            "what_if_is_estimate": True,
            "budget_allocation": allocation,
        }
        json.dump(document, sys.stdout, indent=2)
        print()
    else:
        print(
            verdict(report.file_bytes, budget)
            if budget is not None
            else f"{args.file}: {format_size(report.file_bytes)}"
        )
        print()
        print(holders_table(report, args.top))
        print()
        note = "" if budget is None else f"; 'ok' = fits {budget:,} B"
        print(f"what if (ESTIMATED file size; each layer at this sparsity and label width{note}):")
        print(grid_table(grid, budget))
        if allocation:
            target = "--max-loss" if allocation.get("max_loss") is not None else "--budget"
            print(f"\nallocation chosen by 'dcz compress {target}' (from the file's metadata):")
            print(require("dcz.compressor.budget.report", "dcz report").render_text(allocation))
        if args.curve:
            print(f"\nwrote {args.curve}")
    return 1 if args.check and not fits else 0
