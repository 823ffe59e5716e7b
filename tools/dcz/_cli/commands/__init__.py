"""The `dcz` subcommands, one module each, in the order `dcz --help` lists them.

Every module exposes `register(subparsers, common)`; it must import only the standard library at
top level (heavy packages are imported inside the command, see dcz/cli.py).
"""

from dcz._cli.commands import compress, demo, export_onnx, export_safetensors, info, plot, report, run

COMMAND_MODULES = (demo, compress, info, report, run, export_onnx, export_safetensors, plot)
