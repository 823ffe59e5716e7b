"""The paper authors' compressed SqueezeNet: decoded exactly, and re-encoded as .dcz without loss."""

from pathlib import Path

import numpy as np
import pytest

from dcz import formats
from tools.dev import squeezenet_dc

RELEASE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "squeezenet-deep-compression"
pytestmark = pytest.mark.skipif(not (RELEASE / squeezenet_dc.NET_FILE).exists(), reason="../shared release absent")


@pytest.fixture(scope="module")
def decoded():
    layers, _ = squeezenet_dc.load_release(RELEASE)
    return layers


def test_release_matches_its_stated_figures(decoded):
    # The release's README states these; a wrong layout guess would break at least one.
    assert len(decoded) == 26
    assert sum(d.mask.size for d in decoded) == 1_244_448
    assert sum(d.stored_entries for d in decoded) == 422_083
    assert sum(int(d.mask.sum()) for d in decoded) == 415_921
    assert all(d.codebook[0] == 0.0 for d in decoded)


def test_dcz_holds_the_identical_weights(decoded, tmp_path):
    path = tmp_path / "squeezenet.dcz"
    formats.write(path, squeezenet_dc.to_dcz_tensors(decoded, gap_bits=4))
    with formats.open(path) as f:
        for item in decoded:
            np.testing.assert_array_equal(f.tensor(f"{item.layer.name}.weight"), item.weight())
            np.testing.assert_array_equal(f.tensor(f"{item.layer.name}.bias"), item.bias)


def test_dcz_is_smaller_than_the_authors_file(decoded):
    release_bytes = (RELEASE / squeezenet_dc.NET_FILE).stat().st_size
    blob = formats.dumps(squeezenet_dc.to_dcz_tensors(decoded, gap_bits=4))
    assert len(blob) < release_bytes


def test_truncated_release_is_refused():
    layers = squeezenet_dc.parse_prototxt((RELEASE / squeezenet_dc.PROTOTXT).read_text())
    net = (RELEASE / squeezenet_dc.NET_FILE).read_bytes()
    with pytest.raises(ValueError, match="needs"):
        squeezenet_dc.read_release(net[:-10], layers)
    with pytest.raises(ValueError, match="trailing"):
        squeezenet_dc.read_release(net + b"\0", layers)
