"""`import dcz`: a curated, grouped __all__ that dir() shows, every name resolving, torch only when used.

Checked in a fresh interpreter outside the checkout (other tests have imported torch long ago).
"""

from __future__ import annotations

import json
import subprocess
import sys

import dcz

# The names that import torch when first used: the torch pipeline's result and the training-loop API.
NEEDS_TORCH = {"Compressed", "Pruner", "Palettizer"}


def _run(code: str, cwd) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_dir_shows_all_and_the_subpackages_only():
    public = [name for name in dir(dcz) if not name.startswith("_")]
    assert public == sorted({*dcz.__all__, *dcz._SUBPACKAGES})
    assert len(set(dcz.__all__)) == len(dcz.__all__)


def test_module_globals_are_all_public_names_or_private(tmp_path):
    """Nothing leaks into the namespace: helpers and typing imports are underscore-private (a subpackage
    appears once imported, here dcz.formats, which `import dcz` loads)."""
    out = _run(
        "import json, dcz\nprint(json.dumps(sorted(n for n in vars(dcz) if not n.startswith('_'))))\n",
        tmp_path,
    )
    assert set(out) <= {*dcz.__all__, *dcz._SUBPACKAGES}, set(out) - set(dcz.__all__)


def test_every_name_resolves_and_only_the_torch_ones_import_torch(tmp_path):
    code = (
        "import json, sys, dcz\n"
        f"torch_names = {sorted(NEEDS_TORCH)!r}\n"
        "light = [n for n in dcz.__all__ if n not in torch_names]\n"
        "missing = [n for n in light if getattr(dcz, n, None) is None]\n"
        "heavy = [m for m in ('torch', 'sklearn') if m in sys.modules]\n"
        "unresolved = [n for n in torch_names if getattr(dcz, n, None) is None]\n"
        "print(json.dumps({'missing': missing, 'heavy': heavy, 'unresolved': unresolved,\n"
        "                  'torch_after': 'torch' in sys.modules}))\n"
    )
    assert _run(code, tmp_path) == {"missing": [], "heavy": [], "unresolved": [], "torch_after": True}


def test_the_lazy_table_names_only_public_names():
    assert set(dcz._LAZY) <= set(dcz.__all__)
    assert NEEDS_TORCH <= set(dcz._LAZY)
