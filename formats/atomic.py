"""Publishing a file atomically: every writer of this package (.dcz, streamed .dcz, safetensors export) goes
through `atomic_output`, so a reader or a crash never sees a partial file.

The bytes go to `.NAME.<pid>.<random>.tmp` in the target's folder, are fsync'ed, take the permission bits of
the file they replace (a new file: 0o666 minus the umask), are renamed over the target (os.replace) and the
folder is fsync'ed so the rename itself survives a crash. On any error the temp file is removed and the
target is left as it was. Temps left by writers that were killed are removed by the next write to that name.
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# A temp file whose writer cannot be identified (no pid in its name) or whose pid may have been
# reused is removed once it is this old: no write of a .dcz takes an hour.
STALE_TEMP_SECONDS = 3600


class AtomicFile:
    """A temporary file in the target's folder that `publish()` fsyncs and renames over the target, or
    `discard()` removes: `atomic_output` for writers that keep the file open across calls (the
    streaming writer writes its body into it tensor by tensor)."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.folder = self.path.parent if str(self.path.parent) else Path(".")
        self._mode = _mode_for(self.path)
        remove_stale_temps(self.folder, self.path.name)
        fd, self.temp = tempfile.mkstemp(dir=self.folder, prefix=f".{self.path.name}.{os.getpid()}.", suffix=".tmp")
        self.file = os.fdopen(fd, "wb")
        self._published = False

    def publish(self) -> None:
        """fsync, take the permission bits, rename over the target, fsync the folder; removes the temp on error."""
        try:
            with self.file:
                self.file.flush()
                os.fsync(self.file.fileno())
            os.chmod(self.temp, self._mode)
            os.replace(self.temp, self.path)
            self._published = True
        except BaseException:
            self.discard()
            raise
        _fsync_folder(self.folder)

    def discard(self) -> None:
        """Close and remove the temp; the target stays as it was (nothing to do once published)."""
        self.file.close()
        if self._published:
            return
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass


@contextmanager
def atomic_output(path) -> Iterator[BinaryIO]:
    """A binary file to write into; when the block ends without an error it replaces `path` atomically."""
    out = AtomicFile(path)
    try:
        yield out.file
    except BaseException:
        out.discard()
        raise
    out.publish()


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_output`)."""
    with atomic_output(path) as out:
        out.write(data)


def remove_stale_temps(folder: Path, name: str) -> list[Path]:
    """Remove `.NAME.<pid>.<random>.tmp` files left in `folder` by writers that were killed (their
    pid is gone), and any `.NAME.*.tmp` older than STALE_TEMP_SECONDS; returns what was removed.
    Temps of live writers (another process writing the same name right now) are left alone."""
    removed = []
    now = time.time()
    for tmp in folder.glob(f".{glob.escape(name)}.*.tmp"):
        pid_part = tmp.name[len(name) + 2 :].split(".", 1)[0]
        try:
            age = now - tmp.stat().st_mtime
        except OSError:
            continue
        dead = pid_part.isdigit() and not _alive(int(pid_part))
        if dead or age > STALE_TEMP_SECONDS:
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def _mode_for(path: Path) -> int:
    """The permission bits the published file gets: those of the file it replaces, else 0o666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists under another user (or not a pid): let the age rule decide
    return True
