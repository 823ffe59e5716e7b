"""The writer is atomic: a killed writer never leaves a partial file at the target path."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dcz import formats

ROOT = Path(__file__).resolve().parents[2]

# The child writes a 16 MB tensor; its fsync is slowed down and announces itself, so the parent
# kills it while the complete temporary file sits beside the target, not yet renamed over it.
CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from dcz import formats
    real_fsync = os.fsync
    def slow_fsync(fd):
        print("fsync", flush=True)
        time.sleep(30)
        real_fsync(fd)
    os.fsync = slow_fsync
    big = np.arange(4 * 1024 * 1024, dtype=np.float32)
    formats.write(sys.argv[1], [formats.Raw("big", big)])
""")


def _kill_mid_write(target: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(target)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "fsync"
        temps = [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
        assert temps, "the writer should be writing a temporary file beside the target"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_killed_writer_leaves_the_old_file_intact(tmp_path):
    target = tmp_path / "model.dcz"
    formats.write(target, [formats.Raw("old", np.ones(3, np.float32))])
    old = target.read_bytes()
    _kill_mid_write(target)
    assert target.read_bytes() == old
    assert formats.open(target).names == ["old"]


def test_killed_writer_leaves_no_file_when_there_was_none(tmp_path):
    target = tmp_path / "model.dcz"
    _kill_mid_write(target)
    assert not target.exists()


def test_existing_permissions_are_kept(tmp_path):
    target = tmp_path / "model.dcz"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    formats.write(target, [formats.Raw("a", np.zeros(2, np.float32))])
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert formats.open(target).names == ["a"]


def test_new_file_gets_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        target = tmp_path / "new.dcz"
        formats.write(target, [])
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644


def test_failed_export_leaves_nothing(tmp_path):
    target = tmp_path / "bad.dcz"
    with pytest.raises(formats.FormatError):
        formats.write(target, [formats.Raw("a", np.zeros(2, np.float64))])
    assert list(tmp_path.iterdir()) == []


def test_stale_temps_of_killed_writers_are_removed(tmp_path):
    """A writer killed mid-write leaves `.NAME.<pid>.<random>.tmp`; the next write to that name removes
    it when its pid is gone (or when it is over an hour old), and leaves a live writer's temp alone."""
    import time

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    orphan = tmp_path / f".m.dcz.{dead_pid}.abc123.tmp"
    live = tmp_path / f".m.dcz.{os.getppid()}.def456.tmp"
    old = tmp_path / ".m.dcz.qwerty.tmp"  # an older writer's name: no pid, judged by age
    other = tmp_path / ".n.dcz.1.x.tmp"
    for p in (orphan, live, old, other):
        p.write_bytes(b"x" * 100)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    formats.write(tmp_path / "m.dcz", [formats.Raw("r", np.zeros(3, np.float32))])
    assert not orphan.exists() and not old.exists()
    assert live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "m.dcz"])


def test_atomic_output_error_leaves_target_and_no_temp(tmp_path):
    """The one helper every writer publishes through: an error inside the block keeps the old file."""
    from dcz.formats.atomic import atomic_output

    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_output(target) as out:
        out.write(b"new, half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]
    with atomic_output(target) as out:
        out.write(b"new")
    assert target.read_bytes() == b"new"
    assert list(tmp_path.iterdir()) == [target]


def test_streaming_writer_keeps_permissions_and_removes_stale_temps(tmp_path):
    """The streaming writer publishes through the same helper as formats.write."""
    from dcz.formats.streaming import StreamWriter

    target = tmp_path / "s.dcz"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    old = tmp_path / ".s.dcz.qwerty.tmp"
    old.write_bytes(b"x")
    os.utime(old, (0, 0))
    with StreamWriter(target, graph_format="onnx") as w:
        w.add(formats.Raw("a", np.arange(4, dtype=np.float32)))
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert not old.exists()
    assert formats.open(target).names == ["a"]
