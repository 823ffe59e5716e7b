"""Fuzz the compiled core built with AddressSanitizer and UndefinedBehaviorSanitizer.

    python -m tools.dev.asan_fuzz --seconds 300 --seed 1

Compiles formats/_native/huffman.c + range.c and compressor/_native/kmeans.c once with
-fsanitize=address,undefined into a temporary folder, then re-runs this module in a child Python
with libasan preloaded (an instrumented extension needs the ASan runtime loaded first). The child
puts the instrumented modules in place of dcz.formats._native and dcz.compressor._kmeans and runs
the format fuzz harness (tools/dev/fuzz_formats.py) against them, then damaged streams straight
into the stream decoder (tools/dev/fuzz_streams.py, --stream-seconds), the writer round trips
(tools/dev/fuzz_writer.py, --writer-seconds: the encode side of the core) and the k-means step
(tools/dev/fuzz_kmeans.py, --kmeans-seconds): any
out-of-bounds read or write, use after free or undefined behaviour aborts with a sanitizer report;
only FormatError may escape the reader, and every written tensor must read back identically. Huge
declared sizes make numpy ask for huge arrays: the sanitizer allocator returns NULL for them (numpy
raises MemoryError, the reader a FormatError).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# module name -> (C sources, extra compiler flags as setup.py gives them)
SOURCES = {
    "dcz.formats._native": ([ROOT / "formats" / "_native" / "huffman.c", ROOT / "formats" / "_native" / "range.c"], []),
    "dcz.compressor._kmeans": ([ROOT / "compressor" / "_native" / "kmeans.c"], ["-ffp-contract=off"]),
}
FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined", "-O1", "-g"]


def build(folder: Path) -> list[Path]:
    """The instrumented extensions, compiled straight with gcc (no setuptools, no install)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    include = sysconfig.get_paths()["include"]
    targets = []
    for name, (sources, extra) in SOURCES.items():
        target = folder / f"{name.rsplit('.', 1)[1]}{suffix}"
        cmd = [
            "gcc",
            "-std=c99",
            "-shared",
            "-fPIC",
            *FLAGS,
            *extra,
            f"-I{include}",
            *map(str, sources),
            "-o",
            str(target),
        ]
        subprocess.run(cmd, check=True)
        targets.append(target)
    return targets


def _swap_in(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def child(module_paths: list[str], seconds: float, seed: int, times: dict[str, float]) -> int:
    """In the preloaded child: swap in the instrumented modules, check they are used, fuzz."""
    core, kmeans_core = (_swap_in(name, path) for name, path in zip(SOURCES, module_paths))
    from dcz.compressor import kmeans_native
    from dcz.formats import native

    assert native.core() is core, "the instrumented core is not the one in use"
    assert kmeans_native.core() is kmeans_core, "the instrumented k-means step is not the one in use"
    from tools.dev import fuzz_formats, fuzz_kmeans, fuzz_streams, fuzz_writer

    status = fuzz_formats.main(["--seconds", str(seconds), "--seed", str(seed)])
    for harness, key in ((fuzz_streams, "stream"), (fuzz_writer, "writer"), (fuzz_kmeans, "kmeans")):
        if not status and times[key] > 0:
            status = harness.main(["--seconds", str(times[key]), "--seed", str(seed)])
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stream-seconds", type=float, default=30.0)
    parser.add_argument("--writer-seconds", type=float, default=60.0)
    parser.add_argument("--kmeans-seconds", type=float, default=30.0)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    times = {"stream": args.stream_seconds, "writer": args.writer_seconds, "kmeans": args.kmeans_seconds}
    if args.child:
        return child(args.child, args.seconds, args.seed, times)
    with tempfile.TemporaryDirectory() as tmp:
        modules = build(Path(tmp))
        libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
        env = dict(
            os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1"
        )
        cmd = [sys.executable, "-m", "tools.dev.asan_fuzz", "--seconds", str(args.seconds), "--seed", str(args.seed)]
        cmd += [f"--{key}-seconds={value}" for key, value in times.items()]
        cmd += ["--child", *map(str, modules)]
        return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
