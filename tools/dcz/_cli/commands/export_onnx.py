"""`dcz export-onnx FILE -o out.onnx`: a standard dense ONNX model from a .dcz."""

from __future__ import annotations

from dcz._cli.commands._common import (
    add_command,
    add_max_dense_bytes,
    dense_budget,
    existing_file,
    naming_file,
    output_path,
)
from dcz._cli.errors import require

DESCRIPTION = """\
Write a standard ONNX model with every weight decoded and inlined, for tools that do not read .dcz
(netron, other runtimes). The file is dense: it is as large as the uncompressed model.
Needs only the runtime extra: pip install 'dcz[runtime]'.

example:
  dcz export-onnx lenet.dcz -o lenet.onnx"""


def register(subparsers, common) -> None:
    parser = add_command(
        subparsers, common, "export-onnx", "write a .dcz as a plain dense ONNX model", DESCRIPTION, run
    )
    parser.add_argument("file", help="the .dcz file")
    parser.add_argument("--output", "-o", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    add_max_dense_bytes(parser)


def run(args) -> int:
    source = existing_file(args.file, ".dcz file")
    target = output_path(args.output)
    runtime = require("dcz.runtime", "dcz export-onnx")
    with naming_file(source):
        runtime.export_onnx(source, target, **dense_budget(args))
    print(f"wrote {target} ({target.stat().st_size:,} bytes)")
    return 0
