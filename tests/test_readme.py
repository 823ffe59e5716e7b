"""The README's two opening commands are the ones the project really runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """Shell lines of the first ```sh block of README.md (comments dropped)."""
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md has no ```sh block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_demo_and_test_commands():
    demo, tests = readme_commands()
    assert demo == "pip install torch==2.13.0 -e '.[all]' && dcz demo"
    assert tests.endswith("python -m pytest -q")


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = readme_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


PRODUCT_DOCS = ("README.md", "BENCHMARKS.md", "formats/SPEC.md", "runtime/README.md", "docs")
PRODUCT_CODE = ("compressor", "formats", "runtime", "tools/dcz")
TRACKER_REFERENCE = re.compile(r"\bissues? ?#?\d+|\bissue-\d+", re.I)


def _files(roots: tuple[str, ...], pattern: str) -> list[Path]:
    found = []
    for root in roots:
        path = ROOT / root
        found += sorted(path.rglob(pattern)) if path.is_dir() else [path]
    return found


def test_benchmark_summary_links_every_detail_page():
    """BENCHMARKS.md is the short summary; each page under docs/benchmarks/ is linked from it and links resolve."""
    summary = (ROOT / "BENCHMARKS.md").read_text()
    pages = sorted((ROOT / "docs" / "benchmarks").glob("*.md"))
    assert pages, "docs/benchmarks/ holds no detail page"
    for page in pages:
        assert f"docs/benchmarks/{page.name}" in summary, f"BENCHMARKS.md does not link {page.name}"
    for doc in [ROOT / "BENCHMARKS.md", *pages]:
        for target in re.findall(r"\]\(([^)#]+)\)", doc.read_text()):
            if "://" not in target:
                assert (doc.parent / target).exists(), (
                    f"{doc.relative_to(ROOT)} links to {target}, which does not exist"
                )


def test_every_headline_figure_names_its_command():
    """Each bullet of the summary carries a `python -m ...` command or says it shares the previous one."""
    bullets = re.split(r"\n(?=- )", (ROOT / "BENCHMARKS.md").read_text())[1:]
    assert bullets
    for bullet in bullets:
        assert "`python -m " in bullet or "(same command)" in bullet, bullet.split("\n")[0]


def test_no_internal_tracker_references_in_product_docs_or_docstrings():
    offenders = []
    for path in _files(PRODUCT_DOCS, "*.md") + _files(PRODUCT_CODE, "*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if TRACKER_REFERENCE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_readme_python_example_runs_as_written(tmp_path):
    """The ```python block of README.md, verbatim, in a fresh interpreter and an empty folder."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md has no ```python block"
    done = subprocess.run(
        [sys.executable, "-c", block.group(1)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"lenet.dcz", "lenet.onnx", "lenet2.dcz"} <= {p.name for p in tmp_path.iterdir()}
    assert "fc1.weight" in done.stdout  # the size report printed


def test_readme_training_loop_example_runs_as_written(tmp_path):
    """The second ```python block (your own training loop), verbatim, in a fresh interpreter."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2 and "dcz.Pruner" in blocks[1]
    done = subprocess.run([sys.executable, "-c", blocks[1]], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with __import__("dcz").open(tmp_path / "digits.dcz") as f:
        assert f.info("0.weight").encoding == "sparse_shared"


def test_readme_checkpoint_example_runs_as_written(tmp_path):
    """The checkpoint ```python block, verbatim, in a fresh interpreter: the tensors come back palettized."""
    pytest.importorskip("torch")
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    block = next((b for b in blocks if "compress_checkpoint" in b), None)
    assert block, "README.md has no checkpoint example"
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with __import__("dcz").open(tmp_path / "model.dcz") as f:
        assert {f.info(name).codebook_size for name in ("0.weight", "2.weight")} == {16}
    assert "-> " in done.stdout
