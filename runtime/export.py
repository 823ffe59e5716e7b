"""`runtime.export_onnx`: decode a .dcz back into an ordinary dense ONNX file.

For runtimes that cannot read .dcz. Placeholders become inline initializers; when the weights
pass protobuf's 2 GiB ceiling they go to one external data file beside the model instead
(`<name>.data`, the layout onnx.save_model writes). Both files are written to temporary names and
renamed into place, so a failure leaves no partial output.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
from onnx import numpy_helper

from dcz.formats.layout import DEFAULT_MAX_DENSE_BYTES

from .errors import DczRuntimeError
from .model import open_dcz
from .onnx_graph import graph_bytes, parse_model, placeholders
from .validate import check_placeholders

# Protobuf refuses messages over 2 GiB; stay clear of it with some room for the graph itself.
_INLINE_LIMIT = 2**31 - (64 << 20)


def export_onnx(
    dcz_path, onnx_path, external_data: bool | None = None, *, max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES
) -> Path:
    """Write the dense ONNX model equivalent to `dcz_path` at `onnx_path`; returns the path.

    external_data  None: only when the model would not fit in one protobuf; True/False forces it
                   (True moves tensors of >= 1 KiB to `<name>.data`; with none that large, the model is
                   written whole and no data file is made). Nothing is written outside the folder of
                   `onnx_path`: a graph naming external data of its own is refused.
    max_dense_bytes  budget of decoded dense bytes per tensor, as for runtime.load.
    """
    onnx_path = Path(onnx_path)
    with open_dcz(dcz_path, max_dense_bytes) as dcz:
        try:
            model = parse_model(graph_bytes(dcz.graph_format, dcz.graph))
        except DczRuntimeError as error:
            raise DczRuntimeError(f"{dcz_path}: {error}") from None
        wanted = placeholders(model)
        check_placeholders(wanted, {name: dcz.info(name) for name in dcz.names})
        total = 0
        for index, init in enumerate(model.graph.initializer):
            if init.name in wanted:
                dense = numpy_helper.from_array(
                    dcz.tensor(init.name).astype(wanted[init.name].dtype, copy=False), init.name
                )
                total += len(dense.raw_data)
                model.graph.initializer[index].CopyFrom(dense)
    if external_data is None:
        external_data = total > _INLINE_LIMIT
    _atomic_save(model, onnx_path, external_data)
    return onnx_path


def _atomic_save(model: onnx.ModelProto, path: Path, external_data: bool) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    data_name = path.name + ".data"
    with tempfile.TemporaryDirectory(dir=folder, prefix=".dcz-export-") as tmp:
        tmp_model = Path(tmp) / path.name
        if external_data:
            onnx.save_model(
                model,
                tmp_model,
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_name,
                size_threshold=1024,
            )
            written = Path(tmp) / data_name
            if written.exists():  # not when every tensor is under the 1 KiB threshold: all stay inline
                os.replace(written, folder / data_name)
        else:
            onnx.save_model(model, tmp_model)
        os.replace(tmp_model, path)
