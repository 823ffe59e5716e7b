"""One benchmark command: `.dcz` next to what users would pick instead, on the same models, in one run.

    python -m tools.bench.bench [--models lenet300,lenet5,resnet18,vgg-stack] [--repeats 5] [--out docs/benchmarks/alternatives.md]

For every model: dense ONNX; zipped (DEFLATE-9, TF-MOT's advice); zstd -19; ORT quantize_dynamic
int8 and that zipped; the pruned + shared weights as a dense ONNX, zipped; `.dcz` at P, P+Q, P+Q+H.
Columns: bytes, ratio to dense, top-1 (trained models, from the file as loaded back), time to produce,
load + first inference and peak RSS (each load in a fresh process). Times are medians of --repeats.
Then the VGG-16-sized stack's post-training compression time and peak RSS (own process), and the
other engineers' k-means / Huffman / inference figures gathered in one place.
With --out, the Markdown replaces that page's top matter and `bench` section (others untouched).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.bench import bench_machine  # noqa: E402

DEFAULT_MODELS = "lenet300,lenet5,resnet18,vgg-stack"
HEAVY_BYTES = 100 * 2**20  # models this large produce each file once (zstd -19 of 500 MB takes minutes)


SECTION_TOOLS = (
    (
        "python -m tools.bench.bench --out docs/benchmarks/alternatives.md",
        "alternatives.md: .dcz vs alternatives, VGG-stack compression, gathered figures",
    ),
    ("python -m tools.bench.bench_formats", "formats.md: encode/decode throughput, coded bits vs entropy"),
    ("python -m tools.bench.bench_kmeans", "kmeans.md: exact 1-D k-means vs scikit-learn"),
    ("python -m tools.bench.lenet_experiment --model both", "compressor-lenet.md: the paper's Tables 2 and 3"),
    ("python -m tools.bench.bench_compress_models", "compressor-models.md: architectures with BN + residuals by stage"),
    ("python -m tools.bench.bench_runtime --write", "runtime.md: ORT / NumPy inference, 100M load RSS"),
    ("python -m tools.bench.budget_experiment", "budget.md: fitting a byte budget, solver vs uniform"),
)


def parse_args(
    argv: list[str] | None, prog: str = "bench", parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser
) -> argparse.Namespace:
    parser = parser_class(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help=f"comma-separated, from lenet300, lenet5, resnet18, vgg-stack, tiny (default {DEFAULT_MODELS})",
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per timing; figures are medians (default 5)")
    parser.add_argument(
        "--out",
        type=Path,
        help="write the tables into this page, e.g. docs/benchmarks/alternatives.md (top matter + bench section)",
    )
    parser.add_argument("--workdir", type=Path, help="where produced files go (default: a temporary folder)")
    parser.add_argument("--no-compress-test", action="store_true", help="skip the VGG-stack compression time/RSS run")
    parser.add_argument("--no-gather", action="store_true", help="skip running the other engineers' bench tools")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    from tools.bench.bench_models import BUILDERS

    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in BUILDERS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; choose from {', '.join(BUILDERS)}")
    return args


def command_line(argv: list[str] | None) -> str:
    return "python -m tools.bench.bench " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )


def bench_model(name: str, workdir: Path, repeats: int, log) -> str:
    """Build, produce every row, measure every row; the model's Markdown block."""
    import torch

    from tools.bench import bench_artifacts, bench_measure, bench_report
    from tools.bench.bench_models import BUILDERS

    log(f"[{name}] building and compressing ...")
    case = BUILDERS[name]()
    dense_bytes = sum(p.numel() * 4 for p in case.model.parameters())
    produce_repeats = 1 if dense_bytes > HEAVY_BYTES else repeats
    log(f"[{name}] compressed in {case.compress_s:.1f} s; producing files ({produce_repeats} run(s) each) ...")
    with torch.no_grad():
        artifacts = bench_artifacts.alternatives(case.model, case.example, workdir, produce_repeats, name)
        artifacts += bench_artifacts.compressed_rows(
            case.compressed, case.example, case.layers, workdir, produce_repeats, name
        )
    example_path, eval_paths = bench_measure.save_inputs(workdir, name, case.example, case.eval_set)
    rows = []
    for art in artifacts:
        log(f"[{name}] loading {art.label} ({art.nbytes:,} B) x{repeats} ...")
        rows.append(
            bench_report.Row(art, bench_measure.measure_loads(art.kind, art.path, example_path, repeats, eval_paths))
        )
    imports = min((r.load.rss_imports_mib for r in rows if r.load.rss_imports_mib), default=None)
    notes = [f"Compression: {case.compress_how}; {case.compress_s:.1f} s (one run, not in 'time to produce')."]
    notes += [
        f"Time to produce: cumulative from the in-memory model (export, then zip / quantize), median of "
        f"{produce_repeats} run(s)"
        + ("; one run, the model is 0.5 GB." if produce_repeats == 1 and repeats > 1 else ".")
    ]
    if imports:
        notes.append(
            f"Load + first inference and peak RSS: median of {repeats} fresh processes, ORT CPU, 1 thread; "
            f"peak RSS includes ~{imports:.0f} MiB of interpreter + imports."
        )
    notes += case.notes
    body = [f"### {case.title}", "", bench_report.table(rows), ""]
    body += [f"- {n}" for n in notes]
    body += [bench_report.verdict(rows), ""]
    return "\n".join(body)


def gathered_figures(log) -> str:
    from tools.bench import bench_gather

    log("[gather] running the other engineers' bench tools ...")
    return bench_gather.markdown()


def compression_test(log) -> str:
    from tools.bench import bench_vgg

    log("[vgg-stack] post-training compression time and peak RSS (own process) ...")
    return bench_vgg.markdown()


def top_matter(cmd: str, info: dict) -> str:
    return "\n".join(
        [
            "# .dcz against the alternatives",
            "",
            "[Summary of all figures: BENCHMARKS.md](../../BENCHMARKS.md)",
            "",
            "Regenerate the comparison tables (and the gathered figures) with one command:",
            "",
            "```",
            "python -m tools.bench.bench --models lenet300,lenet5,resnet18,vgg-stack --repeats 5 --out docs/benchmarks/alternatives.md",
            "```",
            "",
            "Every other page of docs/benchmarks/ is regenerated by its own tool (the command heads each page):",
            "",
            *[f"- `{tool}`: {what}" for tool, what in SECTION_TOOLS],
            "",
            f"Last full run of the comparison: `{cmd}`",
            "",
            bench_machine.to_markdown(info).rstrip(),
            "",
            "Speed is never asserted by tests; figures are medians of repeated runs, and compared rows come from the same run.",
        ]
    )


def main(
    argv: list[str] | None = None,
    prog: str = "bench",
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> int:
    """Run the suite; `dcz bench` passes its own prog name and a parser whose errors are one line."""
    args = parse_args(argv, prog, parser_class)
    cmd = command_line(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    info = bench_machine.describe()
    print(bench_machine.to_markdown(info))
    import torch

    torch.set_num_threads(1)
    workdir_ctx = tempfile.TemporaryDirectory(prefix="dcz-bench-") if args.workdir is None else None
    workdir = Path(workdir_ctx.name) if workdir_ctx else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        blocks = [f"## .dcz against the alternatives\n\nCommand: `{cmd}`\n"]
        blocks += [bench_model(name, workdir, args.repeats, log) for name in args.models]
        if "vgg-stack" in args.models and not args.no_compress_test:
            blocks.append(compression_test(log))
        if not args.no_gather:
            blocks.append(gathered_figures(log))
    finally:
        if workdir_ctx:
            workdir_ctx.cleanup()
    blocks.append(f"_Whole run: {time.perf_counter() - start:.0f} s wall._")
    body = "\n".join(blocks)
    print(body)
    if args.out:
        from tools.bench.bench_report import update_benchmarks

        update_benchmarks(args.out, top_matter(cmd, info), body)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
