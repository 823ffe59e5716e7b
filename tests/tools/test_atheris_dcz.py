"""A short coverage-guided run of tools/dev/atheris_dcz.py over its seed corpus: only DCZ errors, no slow
input, memory within 64 MiB + 2x the declared output (the harness raises otherwise, and libFuzzer then
exits non-zero). The long run and its figures are in docs/benchmarks/hardening.md."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")
ROOT = Path(__file__).resolve().parents[2]


def test_seed_corpus_is_what_the_generator_makes(tmp_path):
    from tools.dev.atheris_dcz import seed_files

    committed = {p.name: p.read_bytes() for p in (ROOT / "tools/dev/corpus").iterdir()}
    assert committed == seed_files()


def test_short_fuzz_run_finds_nothing(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "tools/dev/corpus", corpus)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.dev.atheris_dcz",
            str(corpus),
            "-max_total_time=4",
            "-timeout=10",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done" in run.stderr and not list(tmp_path.glob("crash-*"))
