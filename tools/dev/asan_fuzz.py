"""Fuzz the compiled core built with AddressSanitizer and UndefinedBehaviorSanitizer.

    python -m tools.dev.asan_fuzz --seconds 300 --seed 1

Compiles formats/_native/huffman.c once with -fsanitize=address,undefined into a temporary
folder, then re-runs this module in a child Python with libasan preloaded (an instrumented
extension needs the ASan runtime loaded first). The child puts the instrumented module in place of
dcz.formats._native and runs the format fuzz harness (tools/dev/fuzz_formats.py) against it, then
the writer round trips (tools/dev/fuzz_writer.py, --writer-seconds: the encode side of the core): any
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
SOURCE = ROOT / "formats" / "_native" / "huffman.c"
FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined", "-O1", "-g"]


def build(folder: Path) -> Path:
    """The instrumented extension, compiled straight with gcc (no setuptools, no install)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = folder / f"_native{suffix}"
    include = sysconfig.get_paths()["include"]
    cmd = ["gcc", "-std=c99", "-shared", "-fPIC", *FLAGS, f"-I{include}", str(SOURCE), "-o", str(target)]
    subprocess.run(cmd, check=True)
    return target


def child(module_path: str, seconds: float, seed: int, writer_seconds: float) -> int:
    """In the preloaded child: swap in the instrumented core, check it is used, fuzz."""
    spec = importlib.util.spec_from_file_location("dcz.formats._native", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["dcz.formats._native"] = module
    from dcz.formats import native

    assert native.core() is module, "the instrumented core is not the one in use"
    from tools.dev import fuzz_formats, fuzz_writer

    status = fuzz_formats.main(["--seconds", str(seconds), "--seed", str(seed)])
    return status or fuzz_writer.main(["--seconds", str(writer_seconds), "--seed", str(seed)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--writer-seconds", type=float, default=60.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.seconds, args.seed, args.writer_seconds)
    with tempfile.TemporaryDirectory() as tmp:
        module = build(Path(tmp))
        libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
        env = dict(
            os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1"
        )
        cmd = [sys.executable, "-m", "tools.dev.asan_fuzz", "--child", str(module)]
        cmd += ["--seconds", str(args.seconds), "--seed", str(args.seed), "--writer-seconds", str(args.writer_seconds)]
        return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
