"""`dcz export-safetensors FILE -o out.safetensors`: a weights-only .dcz back to a safetensors checkpoint."""

from __future__ import annotations

from dcz._cli.commands._common import (
    add_command,
    add_max_dense_bytes,
    dense_budget,
    existing_file,
    naming_file,
    output_path,
    size_arg,
)
from dcz._cli.errors import require

DESCRIPTION = """\
Write the tensors of a .dcz as a safetensors checkpoint, each in the dtype the source checkpoint had
(bfloat16 rounded to nearest even from the decoded values), one tensor in memory at a time. With
--max-shard-size the output is split into NAME-0000N-of-0000M.safetensors files plus
NAME.safetensors.index.json, as Hugging Face checkpoints are.

examples:
  dcz export-safetensors model.dcz -o model.safetensors
  dcz export-safetensors model.dcz -o model.safetensors --max-shard-size 5GB"""


def register(subparsers, common) -> None:
    parser = add_command(
        subparsers, common, "export-safetensors", "write a .dcz's tensors as safetensors", DESCRIPTION, run
    )
    parser.add_argument("file", help="the .dcz file")
    parser.add_argument("--output", "-o", required=True, metavar="OUT.safetensors", help="the file to write")
    parser.add_argument("--max-shard-size", type=size_arg, metavar="SIZE", help="split into shards of at most SIZE")
    add_max_dense_bytes(parser)


def run(args) -> int:
    source = existing_file(args.file, ".dcz file")
    target = output_path(args.output)
    module = require("dcz.runtime.safetensors_out", "dcz export-safetensors")
    with naming_file(source):
        written = module.export_safetensors(source, target, args.max_shard_size, **dense_budget(args))
    for path in written:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0
