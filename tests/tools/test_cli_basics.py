"""The `dcz` command line as a shell user meets it: help texts, one-line errors, exit codes, sizes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcz._cli.errors import CliError
from dcz._cli.sizes import format_size, parse_size, size_at_least
from dcz.cli import main

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["demo", "compress", "info", "report", "run", "export-onnx", "plot"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, expected_code: int, *fragments: str) -> None:
    assert code == expected_code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dcz: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


# --- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("100KB", 100_000),
        ("1.5MB", 1_500_000),
        ("256KiB", 262_144),
        ("1000000", 1_000_000),
        ("64k", 64_000),
        ("64kb", 64_000),
        ("2 MiB", 2 * 1024**2),
        ("1.1GB", 1_100_000_000),
        ("1_000", 1000),
        ("0.5KiB", 512),
        (" 7b ", 7),
        ("1.0001KB", 1000),
    ],
)
def test_parse_size_accepts_what_people_write(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["100 parsecs", "", "KB", "-5KB", "1e6", "0", "0.4", "1..5MB", "12 K B"])
def test_parse_size_rejects_non_sizes_as_usage_errors(text):
    with pytest.raises(CliError) as caught:
        parse_size(text)
    assert caught.value.exit_code == 2
    assert repr(text) in caught.value.one_line()


@given(st.integers(0, 10**13))
def test_size_at_least_reads_back_no_smaller_and_close(size):
    """The size the --max-dense-bytes advice suggests lets the file open, and is not far above it."""
    text = size_at_least(size)
    assert size <= parse_size(text) <= max(size * 1.1, 1000), text


def test_size_at_least_is_short():
    assert [size_at_least(n) for n in (40, 8_192, 11_008, 4 << 30, 2 * 10**9)] == [
        "40B",
        "8.2KB",
        "11.1KB",
        "4.3GB",
        "2GB",
    ]


def test_format_size_shows_exact_bytes():
    assert format_size(27_648) == "27,648 B (27.6 KB)"
    assert format_size(999) == "999 B"


# --- help ----------------------------------------------------------------------------------


def test_top_level_help_lists_every_command(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for command in COMMANDS:
        assert command in out
    assert "exit codes" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(capsys, command):
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: dcz {command}")
    assert "example" in out


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.startswith("dcz ")
    assert out.splitlines()[1] in ("decoder: compiled", "decoder: numpy (DCZ_NATIVE=0)") or out.splitlines()[
        1
    ].startswith("decoder: numpy (compiled core not built")
    assert out.splitlines()[2] in ("k-means: compiled", "k-means: numpy (DCZ_NATIVE=0)") or out.splitlines()[
        2
    ].startswith("k-means: numpy (compiled k-means not built")


def test_version_names_the_numpy_fallback(capsys, monkeypatch):
    monkeypatch.setenv("DCZ_NATIVE", "0")
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.splitlines()[1:] == ["decoder: numpy (DCZ_NATIVE=0)", "k-means: numpy (DCZ_NATIVE=0)"]


def test_no_command_prints_help_and_fails(capsys):
    code, _, err = run_cli(capsys)
    assert code == 2 and "COMMAND" in err


# --- one-line errors -----------------------------------------------------------------------


def test_unknown_command(capsys):
    code, _, err = run_cli(capsys, "frobnicate")
    assert_one_line_error(code, err, 2, "invalid choice", "'frobnicate'", "dcz --help")


def test_unknown_option_names_the_command_help(capsys, tmp_path):
    code, _, err = run_cli(capsys, "info", str(tmp_path / "x.dcz"), "--frob")
    assert_one_line_error(code, err, 2, "--frob", "dcz info --help")


def test_missing_required_argument(capsys):
    code, _, err = run_cli(capsys, "run", "x.dcz")
    assert_one_line_error(code, err, 2, "--input")


def test_bad_budget_string(capsys, tmp_path):
    code, _, err = run_cli(capsys, "report", str(tmp_path / "x.dcz"), "--budget", "100 parsecs")
    assert_one_line_error(code, err, 2, "'100 parsecs'", "unknown unit 'parsecs'", "KiB")


@pytest.mark.parametrize(
    ("text", "expected"), [("1/10", Fraction(1, 10)), ("12.5%", Fraction(1, 8)), ("1", 1), ("9MB", 9 * 10**6)]
)
def test_budget_is_a_size_or_a_share_of_the_dense_model(text, expected):
    from dcz._cli.commands._common import budget_arg, resolve_budget

    assert budget_arg(text) == expected and type(budget_arg(text)) is type(expected)
    assert resolve_budget(budget_arg(text), 1001) == (expected if isinstance(expected, int) else int(1001 * expected))


@pytest.mark.parametrize("share", ["3/2", "0/5", "1/0", "a/b", "150%"])
def test_bad_budget_share(capsys, tmp_path, share):
    code, _, err = run_cli(capsys, "compress", str(tmp_path / "m.onnx"), "--budget", share)
    assert_one_line_error(code, err, 2, f"invalid budget {share!r}")


@pytest.mark.parametrize(
    "command", [["info"], ["report"], ["run", "--input", "x.npy"], ["export-onnx", "-o", "x.onnx"]]
)
def test_missing_file(capsys, tmp_path, command):
    missing = tmp_path / "missing.dcz"
    code, _, err = run_cli(capsys, command[0], str(missing), *command[1:])
    assert_one_line_error(code, err, 1, "not found", str(missing))


def test_folder_instead_of_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "info", str(tmp_path))
    assert_one_line_error(code, err, 1, "not a regular file")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(CliError):
        main(["--debug", "info", str(tmp_path / "missing.dcz")])
    with pytest.raises(CliError):
        main(["info", str(tmp_path / "missing.dcz"), "--debug"])


def test_unexpected_exception_is_one_line(capsys, monkeypatch):
    import dcz._cli.commands.info as info

    def explode(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(info, "run", explode)
    code, _, err = run_cli(capsys, "info", "x.dcz")
    assert_one_line_error(code, err, 1, "internal error RuntimeError: boom second line", "--debug")


def test_missing_extra_names_the_pip_command(capsys, monkeypatch):
    import dcz._cli.commands.info as info

    def needs_torch(args):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(info, "run", needs_torch)
    code, _, err = run_cli(capsys, "info", "x.dcz")
    assert_one_line_error(code, err, 1, "'torch'", "pip install 'dcz[compress]'")


# --- the real console script ---------------------------------------------------------------


def dcz_command() -> list[str]:
    script = shutil.which("dcz", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "dcz.cli"]


def test_console_script_in_a_subprocess(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DCZ_DEBUG"}
    ok = subprocess.run([*dcz_command(), "--help"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert ok.returncode == 0 and "usage: dcz" in ok.stdout
    bad = subprocess.run([*dcz_command(), "info", "missing.dcz"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "dcz: error: .dcz file not found: missing.dcz; check the path"
