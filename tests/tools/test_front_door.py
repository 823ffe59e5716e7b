"""`import dcz`: a curated, grouped __all__ that dir() shows, every name resolving, torch only when used.

Checked in a fresh interpreter outside the checkout (other tests have imported torch long ago).
"""

from __future__ import annotations

import json
import subprocess
import sys

import dcz

# The torch parts: their modules import torch only when one is built or used.
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


def test_every_name_resolves_without_torch_and_building_a_pruner_imports_it(tmp_path):
    code = (
        "import json, sys, dcz\n"
        "missing = [n for n in dcz.__all__ if getattr(dcz, n, None) is None]\n"
        "heavy = [m for m in ('torch', 'sklearn') if m in sys.modules]\n"
        "from dcz.compressor.loop import Pruner\n"
        "same = dcz.Pruner is Pruner and dcz.Compressed.__module__ == 'dcz.compressor.result'\n"
        "import torch\n"
        "dcz.Pruner(torch.nn.Linear(4, 4), {'global': {'prune': 'sparsity', 'sparsity': 0.5}}).prepare()\n"
        "print(json.dumps({'missing': missing, 'heavy': heavy, 'same': same}))\n"
    )
    assert _run(code, tmp_path) == {"missing": [], "heavy": [], "same": True}


def test_star_import_is_torch_free(tmp_path):
    """It binds every name of __all__, the torch parts too (their modules import torch in methods only);
    dcz.load, Model and export_onnx bring onnx and onnxruntime, as using them would."""
    code = (
        "import json, sys\n"
        "from dcz import *\n"
        "names = sorted(n for n in dir() if not n.startswith('_') and n not in ('json', 'sys'))\n"
        "heavy = [m for m in ('torch', 'sklearn') if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'pruner': Pruner.__name__, 'names': names}))\n"
    )
    import dcz

    assert _run(code, tmp_path) == {"heavy": [], "pruner": "Pruner", "names": sorted(dcz.__all__)}


def test_the_lazy_table_names_only_public_names():
    assert set(dcz._LAZY) <= set(dcz.__all__)
    assert NEEDS_TORCH <= set(dcz._LAZY)
