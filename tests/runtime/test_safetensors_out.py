"""safetensors export publishes each file through formats.atomic: all or nothing, permissions kept."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from safetensors.numpy import load_file

from dcz import formats
from dcz.runtime import safetensors_out
from dcz.runtime.safetensors_out import export_safetensors


@pytest.fixture
def dcz_file(tmp_path):
    path = tmp_path / "w.dcz"
    formats.write(path, [formats.Raw("a", np.arange(6, dtype=np.float32).reshape(2, 3))])
    return path


def test_export_keeps_the_target_permissions(dcz_file, tmp_path):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"old")
    os.chmod(out, 0o600)
    export_safetensors(dcz_file, out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    np.testing.assert_array_equal(load_file(str(out))["a"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_export_failing_mid_tensor_leaves_the_old_file(dcz_file, tmp_path, monkeypatch):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"old")

    def broken(path, bf16_bits=False, **budget):
        raise RuntimeError("decode failed")
        yield  # a generator, like the real one

    monkeypatch.setattr(safetensors_out, "iter_tensors", broken)
    with pytest.raises(RuntimeError, match="decode failed"):
        export_safetensors(dcz_file, out)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors", "w.dcz"]
