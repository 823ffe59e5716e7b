"""check_placeholders with a non-UTF-8 graph name (protobuf hands it over as bytes): a DczRuntimeError, not a
TypeError from sorting bytes with str (an atheris finding)."""

from __future__ import annotations

import numpy as np
import pytest

from dcz.runtime.errors import DczRuntimeError
from dcz.runtime.onnx_graph import Placeholder
from dcz.runtime.validate import check_placeholders


def test_bytes_and_str_names_give_the_runtime_error():
    wanted = {
        b"w\xff": Placeholder(b"w\xff", np.dtype(np.float32), (2,)),
        "v": Placeholder("v", np.dtype(np.float32), (2,)),
    }
    with pytest.raises(DczRuntimeError, match="does not store it"):
        check_placeholders(wanted, {"x": object()})
