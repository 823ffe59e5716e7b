"""`dcz`: the command line of the DCZ toolkit (console script `dcz = dcz.cli:main`).

Each subcommand lives in `dcz/_cli/commands/<name>.py` with `register(subparsers)` and `run(args)`.
Command modules import only the standard library at top level; torch, onnxruntime and friends are
imported inside `run`, so `dcz info`, `dcz run` and `dcz export-onnx` work with only the runtime extra
installed and `dcz --help` starts instantly.

Errors are one line on stderr, ``dcz: error: <what went wrong>; <what to do>``, with exit code 2 for a
wrong command line and 1 for a failure. ``--debug`` (or DCZ_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from dcz._cli.commands import COMMAND_MODULES
from dcz._cli.commands._common import dense_budget_message
from dcz._cli.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    EXTRA_OF_MODULE,
    CliError,
    missing_extra_error,
    single_line,
)
from dcz.formats.errors import DczError, DenseBudgetError

DESCRIPTION = """\
Deep Compression (Han, Mao & Dally, ICLR 2016) as a toolkit: prune, share weights with
trained quantization, Huffman-code, and run neural networks straight from a .dcz file."""

EPILOG = """\
examples:
  dcz demo                                   train + compress LeNet on the bundled digits
  dcz compress model.onnx -o model.dcz       compress an ONNX model (no torch needed)
  dcz compress pkg.mod:make_net --weights w.pt --input-shape 1,3,32,32 -o net.dcz
  dcz compress model.safetensors -o m.dcz    palettize a checkpoint at 4 bits, tensor by tensor
  dcz info model.dcz                         the per-layer table of the paper, from the file
  dcz report model.dcz --budget 100KB        does it fit? which layers hold the bytes?
  dcz run model.dcz --input x.npy            run it (ONNX Runtime or --backend numpy)

exit codes: 0 success, 1 failure, 2 wrong command line, 130 interrupted.
Run 'dcz COMMAND --help' for the options of a command."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the command's --help, not a usage dump."""

    def error(self, message: str):  # type: ignore[override]
        raise CliError(message, f"see '{self.prog} --help'", EXIT_USAGE)


def _package_version() -> str:
    try:
        return version("dcz")
    except PackageNotFoundError:  # running from a checkout that is not installed
        return "unknown"


def _version_text() -> str:
    """`dcz --version`: the package version and which decoder and k-means step run (compiled or numpy)."""
    from dcz.compressor import kmeans_native  # numpy + the compiled k-means step only
    from dcz.formats import native  # numpy + the compiled core only

    return f"dcz {_package_version()}\ndecoder: {native.describe()}\nk-means: {kmeans_native.describe()}"


class _VersionAction(argparse.Action):
    """--version, its text made only when asked (every other command skips the compressor's import)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):  # noqa: A002
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The full `dcz` parser: global options plus one subparser per command module."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback on errors (also: DCZ_DEBUG=1)",
    )
    parser = _Parser(
        prog="dcz",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="show the version, the decoder and the k-means step, and exit"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMAND_MODULES:
        module.register(subparsers, common)
    return parser


def _report(message: str) -> None:
    print(f"dcz: error: {single_line(message)}", file=sys.stderr)


def _describe(exc: BaseException) -> tuple[str, int]:
    """One line and an exit code for any exception that reached the top."""
    if isinstance(exc, CliError):
        return exc.one_line(), exc.exit_code
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in EXTRA_OF_MODULE:
        return missing_extra_error(exc.name or "", "this command").one_line(), EXIT_FAILURE
    if isinstance(exc, FileNotFoundError):
        where = exc.filename or exc
        return f"no such file or folder: {where}; check the path", EXIT_FAILURE
    if isinstance(exc, (PermissionError, IsADirectoryError, NotADirectoryError)):
        return f"{exc.strerror or exc}: {exc.filename}; check the path and its permissions", EXIT_FAILURE
    if isinstance(exc, OSError):
        return f"{exc}; check the path, permissions and free disk space", EXIT_FAILURE
    if isinstance(exc, DenseBudgetError):  # names the flag, not the Python parameter
        return dense_budget_message(exc), EXIT_FAILURE
    if isinstance(exc, DczError):  # written for users: what is wrong and where
        return f"{exc}", EXIT_FAILURE
    if isinstance(exc, ValueError):
        return f"{type(exc).__name__}: {exc}; rerun with --debug for the traceback", EXIT_FAILURE
    return (
        f"internal error {type(exc).__name__}: {exc}; rerun with --debug and report the traceback",
        EXIT_FAILURE,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, turn every error into one line and an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("DCZ_DEBUG", "") not in ("", "0") or "--debug" in argv
    try:
        args, unknown = build_parser().parse_known_args(argv)
        if args.command is None:
            build_parser().print_help(sys.stderr)
            return EXIT_USAGE
        if unknown:
            raise CliError(
                f"unrecognized arguments: {' '.join(unknown)}", f"see 'dcz {args.command} --help'", EXIT_USAGE
            )
        return int(args.handler(args) or 0)
    except SystemExit as exc:  # --help / --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        _report("interrupted; nothing half-written is left behind (files are written atomically)")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `dcz info x.dcz | head`: not an error for the user
        sys.stderr.close()
        return 0
    except Exception as exc:  # noqa: BLE001 - the top of the program: everything becomes one line
        if debug:
            raise
        message, code = _describe(exc)
        _report(message)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
