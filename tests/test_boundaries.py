"""Dependencies point one way: compressor -> formats <- runtime.

Checked in a fresh interpreter so that nothing imported by other tests can hide a leak.
"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "formats": ["torch", "sklearn", "onnxruntime", "onnx", "compressor", "runtime"],
    "runtime": ["torch", "sklearn", "compressor"],
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_forbidden(package):
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({package!r})\n"
        "for sub in getattr(sys.modules[%r], '__all_modules__', []):\n" % package
        + "    importlib.import_module(sub)\n"
        f"bad = [m for m in {FORBIDDEN[package]!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{package} pulled in {out.stdout.strip()}"
