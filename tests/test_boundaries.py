"""Dependencies point one way: compressor -> formats <- runtime, all under the one `dcz` namespace.

Checked in a fresh interpreter, started outside the checkout, so that nothing imported by other
tests (or a stray top-level `formats` folder on the path) can hide a leak.
"""

import subprocess
import sys

import pytest

FORBIDDEN = {
    "dcz": ["torch", "sklearn", "onnxruntime", "onnx", "dcz.compressor", "dcz.runtime"],
    "dcz.formats": ["torch", "sklearn", "onnxruntime", "onnx", "dcz.compressor", "dcz.runtime"],
    "dcz.runtime": ["torch", "sklearn", "dcz.compressor"],
}


def _run(code: str, cwd) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_forbidden(package, tmp_path):
    code = (
        "import sys, importlib, pkgutil\n"
        f"pkg = importlib.import_module({package!r})\n"
        "if pkg.__name__ != 'dcz':\n"
        "    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        f"bad = [m for m in {FORBIDDEN[package]!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    assert _run(code, tmp_path) == "", f"{package} pulled in {_run(code, tmp_path)}"


def test_front_door_outside_the_checkout(tmp_path):
    """`import dcz` gives the entry points; generic top-level names are not this project's."""
    code = (
        "import importlib.util, sys, dcz\n"
        "missing = [n for n in ('load', 'open', 'compress', 'DczError', 'write') if not hasattr(dcz, n)]\n"
        "stray = [n for n in ('runtime', 'formats', 'compressor', 'tools') if importlib.util.find_spec(n)]\n"
        "heavy = [m for m in ('torch', 'sklearn') if m in sys.modules]\n"
        "print(missing, stray, heavy)\n"
    )
    assert _run(code, tmp_path) == "[] [] []"


def test_every_package_error_is_a_dcz_error():
    import dcz

    for error in (dcz.FormatError, dcz.CompressError, dcz.DczRuntimeError):
        assert issubclass(error, dcz.DczError) and issubclass(error, ValueError)
