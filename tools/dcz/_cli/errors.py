"""The one error type of the `dcz` command line, and the exit codes a shell user expects.

Every failure the CLI reports is one line: ``dcz: error: <what went wrong>; <what to do>``.
Library errors (formats.FormatError, compressor.CompressError, runtime.DczRuntimeError) are all
ValueError subclasses; `dcz.cli.main` turns them into that line too.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and failed: bad file, failed compression, ...
EXIT_USAGE = 2  # the command line itself is wrong (argparse's convention)
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

# Which extra brings which import, so a missing package names the pip command that fixes it.
EXTRA_OF_MODULE = {
    "torch": "compress",
    "sklearn": "compress",
    "mlxtend": "compress",
    "onnxscript": "compress",
    "tqdm": "compress",
    "rich": "compress",
    "matplotlib": "compress",
    "tomli": "compress",
    "onnx": "runtime",
    "onnxruntime": "runtime",
}


class CliError(ValueError):
    """A failure to report as one line: `message` says what went wrong, `hint` what to do."""

    def __init__(self, message: str, hint: str = "", exit_code: int = EXIT_FAILURE):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def one_line(self) -> str:
        text = f"{self.message}; {self.hint}" if self.hint else self.message
        return single_line(text)


def single_line(text: str) -> str:
    """Collapse a (possibly multi-line) message into one line for the terminal."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def missing_extra_error(module: str, what: str) -> CliError:
    """The error for an optional dependency that is not installed."""
    top = module.split(".")[0]
    extra = EXTRA_OF_MODULE.get(top, "all")
    return CliError(
        f"{what} needs the Python package '{top}', which is not installed",
        f"install it with: pip install 'dcz[{extra}]'",
    )


def require(module: str, what: str) -> ModuleType:
    """Import an optional dependency, or fail with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = (getattr(exc, "name", None) or module).split(".")[0]
        if missing in EXTRA_OF_MODULE or missing == module.split(".")[0]:
            raise missing_extra_error(missing, what) from exc
        raise
