"""formats/SPEC.md section 2.3 lists every standard metadata key the writers emit, and no key they do not.

The writers' keys are read from the source (string constants shaped like a namespaced key in formats/,
compressor/ and tools/dcz/), so a new key without a row in the table fails here.
"""

from __future__ import annotations

import ast
import pkgutil
import re
from pathlib import Path

import dcz

ROOT = Path(__file__).resolve().parents[2]
WRITERS = ("formats", "compressor", "tools/dcz")
KEY = re.compile(r"^(dcz|compress|source|checkpoint)(\.[a-z0-9_]+)+$")
ROW = re.compile(r"^\| `([a-z0-9_.]+)` \|", re.MULTILINE)
# "dcz.<module>" strings name modules (imports, lazy attributes), not metadata keys
MODULES = {m.name for m in pkgutil.iter_modules(dcz.__path__)} | {"formats", "compressor", "runtime"}


def emitted_keys() -> set[str]:
    keys = set()
    for folder in WRITERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and KEY.match(node.value):
                    parts = node.value.split(".")
                    if not (parts[0] == "dcz" and parts[1] in MODULES):
                        keys.add(node.value)
    return keys


def spec_keys() -> set[str]:
    text = (ROOT / "formats" / "SPEC.md").read_text(encoding="utf-8")
    table = text[text.index("Metadata namespaces:") : text.index("### 2.4 Graph section")]
    return set(ROW.findall(table))


def test_every_emitted_key_is_in_the_spec_table():
    emitted = emitted_keys()
    assert {"dcz.producer", "dcz.sizes", "compress.config", "source.framework"} <= emitted  # the scan finds keys
    assert not emitted - spec_keys(), f"metadata keys missing from formats/SPEC.md 2.3: {sorted(emitted - spec_keys())}"


def test_every_spec_key_is_emitted():
    assert not spec_keys() - emitted_keys(), (
        f"SPEC.md 2.3 lists keys no writer emits: {sorted(spec_keys() - emitted_keys())}"
    )
