"""Measure load time, peak RSS and accuracy of produced files, each load in a fresh subprocess."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOADER = Path(__file__).resolve().with_name("bench_load.py")
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LoadFigures:
    """Medians over fresh-process loads; accuracy from one full pass over the evaluation set."""

    load_first_s: float | None = None
    peak_rss_mib: float | None = None
    rss_imports_mib: float | None = None
    accuracy: float | None = None
    runs: int = 0
    error: str | None = None


def single_thread_env() -> dict[str, str]:
    """The environment for child processes: one compute thread, the checkout importable."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_loader(
    kind: str,
    path: Path,
    example: Path,
    eval_paths: tuple[Path, Path] | None = None,
    threads: int = 1,
    timeout: float = 900,
) -> dict:
    """One load in a fresh interpreter; returns bench_load's JSON (raises RuntimeError on failure)."""
    cmd = [sys.executable, str(LOADER), kind, str(path), str(example), "--threads", str(threads)]
    if eval_paths:
        cmd += ["--eval", str(eval_paths[0]), str(eval_paths[1])]
    done = subprocess.run(cmd, capture_output=True, text=True, env=single_thread_env(), timeout=timeout)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{kind} load failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_loads(
    kind: str, path: Path, example: Path, repeats: int, eval_paths: tuple[Path, Path] | None = None
) -> LoadFigures:
    """Median load + first-inference time and peak RSS over `repeats` fresh processes.

    The first process also computes top-1 accuracy (after its RSS was read), so the figure is the
    accuracy of exactly the file as loaded back.
    """
    results = []
    try:
        for i in range(max(1, repeats)):
            results.append(run_loader(kind, path, example, eval_paths if i == 0 else None))
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as error:
        return LoadFigures(error=str(error).splitlines()[0][:200], runs=len(results))
    return LoadFigures(
        load_first_s=statistics.median(r["load_first_s"] for r in results),
        peak_rss_mib=statistics.median(r["peak_rss_mib"] for r in results),
        rss_imports_mib=statistics.median(r["rss_imports_mib"] for r in results),
        accuracy=results[0].get("accuracy"),
        runs=len(results),
    )


def save_inputs(workdir: Path, stem: str, example, eval_set) -> tuple[Path, tuple[Path, Path] | None]:
    """Write the example batch and the evaluation set as .npy for the loader processes."""
    example_path = workdir / f"{stem}.input.npy"
    np.save(example_path, np.ascontiguousarray(example.detach().cpu().numpy(), dtype=np.float32))
    if eval_set is None:
        return example_path, None
    x_path, y_path = workdir / f"{stem}.eval_x.npy", workdir / f"{stem}.eval_y.npy"
    images, labels = eval_set
    shape = (len(images),) + tuple(example.shape[1:])
    np.save(x_path, np.ascontiguousarray(images, dtype=np.float32).reshape(shape))
    np.save(y_path, np.asarray(labels, dtype=np.int64))
    return example_path, (x_path, y_path)
