"""Helpers shared by the subcommands: argument types, input checks, opening .dcz files."""

from __future__ import annotations

import argparse
import math
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

from dcz._cli.errors import EXIT_USAGE, CliError, require
from dcz._cli.sizes import parse_size, size_at_least
from dcz.formats.errors import DenseBudgetError, FormatError  # stdlib-only module; dcz is already imported

RAW_HELP = argparse.RawDescriptionHelpFormatter


def add_command(subparsers, common, name: str, summary: str, description: str, handler) -> argparse.ArgumentParser:
    """A subparser with the shared options, its one-line summary for `dcz --help`, and its handler."""
    parser = subparsers.add_parser(
        name, parents=[common], help=summary, description=description, formatter_class=RAW_HELP
    )
    parser.set_defaults(handler=handler)
    return parser


def size_arg(text: str) -> int:
    """argparse type for byte sizes ("100KB"); keeps our one-line message."""
    try:
        return parse_size(text)
    except CliError as exc:
        raise argparse.ArgumentTypeError(exc.one_line()) from None


def budget_arg(text: str) -> int | Fraction:
    """argparse type for --budget: a byte size ("9MB"), or a share of the dense model ("1/10", "10%"),
    returned as a Fraction and resolved by `resolve_budget` once the model is known."""
    share = _share(text)
    if share is None:
        return size_arg(text)
    if not 0 < share <= 1:
        raise argparse.ArgumentTypeError(
            f"invalid budget {text!r}: a share of the dense model must be in (0, 1], e.g. 1/10 or 10%"
        )
    return share


def _share(text: str) -> Fraction | None:
    """'1/10' -> 1/10, '12.5%' -> 1/8; None when `text` is not written as a share."""
    text = str(text).strip()
    try:
        if text.endswith("%"):
            return Fraction(text[:-1].strip()) / 100
        if "/" in text:
            top, _, bottom = text.partition("/")
            return Fraction(int(top), int(bottom))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"invalid budget {text!r}: write a size (9MB), a fraction (1/10) or a percentage (10%)"
        ) from None
    return None


def resolve_budget(budget: int | Fraction | None, dense_bytes: int) -> int | None:
    """Bytes of a --budget given as a share of the dense model (rounded down: a budget is a maximum)."""
    if not isinstance(budget, Fraction):
        return budget
    size = int(budget * dense_bytes)
    if size <= 0:
        raise CliError(f"--budget {budget} of {dense_bytes:,} B is less than a byte", "give a larger share or a size")
    return size


def loss_arg(text: str) -> float:
    """argparse type for --max-loss: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"invalid loss {text!r}: give a finite number >= 0, e.g. 0.5")
    return value


def shape_arg(text: str) -> tuple[int, ...]:
    """argparse type for "1,1,28,28"."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        shape = ()
    if not shape or any(dim <= 0 for dim in shape):
        raise argparse.ArgumentTypeError(
            f"invalid shape {text!r}: write positive sizes separated by commas, e.g. 1,1,28,28"
        )
    return shape


def existing_file(path: str | Path, what: str = "file") -> Path:
    """The path, checked to be an existing regular file (one clear error otherwise)."""
    path = Path(path)
    if not path.exists():
        raise CliError(f"{what} not found: {path}", "check the path")
    if not path.is_file():
        raise CliError(f"{what} is not a regular file: {path}", "give the path of a file")
    return path


def output_path(path: str | Path, what: str = "output") -> Path:
    """The path of a file to write, checked to have an existing parent folder."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise CliError(f"{what} {path} is a folder", "give a file name")
    if not path.parent.exists():
        raise CliError(f"folder {path.parent} for the {what} does not exist", "create it first or pick another path")
    return path


MAX_DENSE_FLAG = "--max-dense-bytes"


def add_max_dense_bytes(parser: argparse.ArgumentParser) -> None:
    """--max-dense-bytes, for every command that opens a .dcz (formats' / runtime's max_dense_bytes)."""
    parser.add_argument(
        MAX_DENSE_FLAG,
        type=size_arg,
        metavar="SIZE",
        help="refuse a file whose tensors decode to more than SIZE (default 2GiB per tensor, and for a model "
        "all of them together); raise it for a trusted larger model, e.g. 8GB",
    )


def dense_budget(args: argparse.Namespace) -> dict[str, int]:
    """{"max_dense_bytes": N} when --max-dense-bytes was given, else {} (the library's default)."""
    value = getattr(args, "max_dense_bytes", None)
    return {} if value is None else {"max_dense_bytes": value}


def dense_budget_message(exc: DenseBudgetError) -> str:
    """The library's over-budget error in command-line terms: the flag and a size that lets the file open."""
    return exc.message(f"{MAX_DENSE_FLAG} {size_at_least(exc.declared)}")


@contextmanager
def naming_file(path: str | Path):
    """Prefix a damaged-file error (formats.FormatError, also via runtime) with the file's path; a file
    over the dense-bytes budget is not damaged: its error names --max-dense-bytes."""
    try:
        yield
    except DenseBudgetError as exc:
        raise CliError(f"{path}: {dense_budget_message(exc)}") from exc
    except FormatError as exc:
        raise CliError(
            f"{path} is not a valid .dcz file: {exc}", "check that it is a complete .dcz written by dcz"
        ) from exc


def open_dcz(path: str | Path, args: argparse.Namespace | None = None) -> Any:
    """formats.open with the file checked first, the budget of --max-dense-bytes (in `args`), and
    FormatError turned into one line naming the file."""
    path = existing_file(path, ".dcz file")
    formats = require("dcz.formats", "reading .dcz files")
    with naming_file(path):
        return formats.open(path, **dense_budget(args or argparse.Namespace()))


def usage_error(message: str, hint: str) -> CliError:
    return CliError(message, hint, EXIT_USAGE)
