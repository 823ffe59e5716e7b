"""`dcz bench ...`: delegates to tools/bench.py (the benchmark suite behind BENCHMARKS.md)."""
from __future__ import annotations

import importlib

from tools.cli_errors import CliError
from tools.commands._common import add_command

DESCRIPTION = """\
Regenerate the benchmark tables of BENCHMARKS.md (.dcz against dense ONNX, zip, zstd, int8 ...).
Every argument after 'bench' goes to tools/bench.py; see 'dcz bench --help' once it is installed."""


def register(subparsers, common) -> None:
    parser = add_command(subparsers, common, "bench", "run the benchmarks behind BENCHMARKS.md", DESCRIPTION, run)
    parser.add_argument("bench_args", nargs="*", metavar="ARG", help="arguments for tools/bench.py (try: dcz bench --help)")


def run(args) -> int:
    return delegate(list(args.bench_args))


def delegate(argv: list[str]) -> int:
    """Hand the arguments to tools.bench.main, which owns its own options and --help."""
    try:
        bench = importlib.import_module("tools.bench")
    except ModuleNotFoundError as exc:
        if exc.name != "tools.bench":
            raise
        raise CliError("the benchmark suite (tools/bench.py) is not part of this installation", "run it from a checkout of the repository") from exc
    from tools.cli import _Parser  # one-line usage errors, exit 2, as every other dcz command

    return int(bench.main(argv, prog="dcz bench", parser_class=_Parser) or 0)
