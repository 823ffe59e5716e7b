"""A read-only mapping of the .dcz's tensors that decodes each one on first use.

The file stays memory-mapped by `formats.open`; a tensor's compressed bytes are only touched when
the tensor is first asked for, and the decoded array is kept so it is decoded once. Peak memory is
therefore the decoded (dense) model plus the mapped file pages actually read, not two dense copies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


class LazyTensors(Mapping):
    """name -> decoded np.ndarray, decoded from `dcz_file` (a formats.DczFile) on first access."""

    def __init__(self, dcz_file, names=None):
        self._file = dcz_file
        self._names = list(dcz_file.names if names is None else names)
        self._decoded: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        array = self._decoded.get(name)
        if array is None:
            if name not in self._names:
                raise KeyError(name)
            array = self._file.tensor(name)
            array.flags.writeable = False  # shared with the backends: nobody may edit weights in place
            self._decoded[name] = array
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name) -> bool:
        return name in self._names

    @property
    def decoded(self) -> list[str]:
        """Names decoded so far (for tests and diagnostics)."""
        return [n for n in self._names if n in self._decoded]

    def release(self, name: str) -> None:
        """Forget a decoded array (the NumPy sparse path keeps only its CSR form)."""
        self._decoded.pop(name, None)

    def decode_all(self) -> dict[str, np.ndarray]:
        """Decode every tensor not decoded yet, in one batched call (DczFile.tensors, faster than one
        `tensor()` per name); returns name -> array for all of them."""
        missing = [n for n in self._names if n not in self._decoded]
        if missing:
            for name, array in self._file.tensors(missing).items():
                array.flags.writeable = False  # shared with the backends: nobody may edit weights in place
                self._decoded[name] = array
        return {n: self._decoded[n] for n in self._names}
