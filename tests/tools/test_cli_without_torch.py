"""Without torch, `dcz info`, `report`, `run`, `export-onnx` and ONNX-in `compress` work, and torch never loads.

Each command runs as a real `dcz` subprocess in which importing torch or scikit-learn fails, as on
a machine where they are not installed (a meta-path blocker installed by sitecustomize).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from test_cli_commands import build_mlp  # noqa: E402  (same folder: pytest puts it on sys.path)

BLOCKER = textwrap.dedent('''
    import sys

    class _Blocked:
        """Pretend torch and scikit-learn are not installed."""
        BLOCKED = ("torch", "sklearn", "torchvision")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _Blocked())
''')
REPORT_MODULES = "import atexit, sys; atexit.register(lambda: print('LOADED:', sorted(m for m in ('torch', 'sklearn') if m in sys.modules), file=sys.stderr))\n"


def dcz_command() -> list[str]:
    script = shutil.which("dcz", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "dcz.cli"]


@pytest.fixture(scope="module")
def blocked_env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("no_torch")
    (folder / "sitecustomize.py").write_text(BLOCKER + REPORT_MODULES)
    env = {k: v for k, v in os.environ.items() if k not in ("DCZ_DEBUG",)}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="module")
def dcz_file(tmp_path_factory):
    import onnx

    from dcz.cli import main

    folder = tmp_path_factory.mktemp("no_torch_files")
    onnx.save(build_mlp(), folder / "mlp.onnx")
    assert main(["compress", str(folder / "mlp.onnx"), "--sparsity", "0.8", "-o", str(folder / "mlp.dcz")]) == 0
    np.save(folder / "x.npy", np.ones((3, 32), np.float32))
    return folder / "mlp.dcz"


def run(env, cwd, *argv) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*dcz_command(), *map(str, argv)], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_the_blocker_blocks(blocked_env, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import torch"], capture_output=True, text=True, env=blocked_env, cwd=tmp_path
    )
    assert done.returncode != 0 and "No module named 'torch'" in done.stderr


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["info", "mlp.dcz"], "fc1.weight"),
        (["report", "mlp.dcz", "--budget", "64KB"], "FITS"),
        (["run", "mlp.dcz", "--input", "x.npy", "--backend", "numpy"], "logits: shape (3, 10)"),
        (["run", "mlp.dcz", "--input", "x.npy"], "logits: shape (3, 10)"),
        (["export-onnx", "mlp.dcz", "-o", "dense.onnx"], "wrote"),
        (["compress", "mlp.onnx", "--quality", "1", "-o", "again.dcz"], "wrote again.dcz"),
    ],
)
def test_commands_work_without_torch(blocked_env, dcz_file, argv, expect):
    done = run(blocked_env, dcz_file.parent, *argv)
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout
    assert "LOADED: []" in done.stderr  # neither torch nor sklearn was imported


def test_torch_commands_name_the_extra(blocked_env, dcz_file):
    done = run(blocked_env, dcz_file.parent, "demo", "--quick")
    assert done.returncode == 1
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith("dcz: error: ") and "pip install 'dcz[compress]'" in first
    assert "Traceback" not in done.stderr
