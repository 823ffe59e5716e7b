"""`dcz info FILE [--json]`: the paper's per-layer stage table, read from the .dcz alone."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from dcz._cli.commands._common import add_command, add_max_dense_bytes, open_dcz

DESCRIPTION = """\
Show what a .dcz file holds: format version, graph, metadata, and per tensor the columns of the
Deep Compression paper's tables (weights, weights % after pruning, weight and index bits at the
P+Q and P+Q+H stages, compression ratios), with the totals. Reads only the file: needs no torch.

examples:
  dcz info lenet.dcz
  dcz info lenet.dcz --json > lenet.json"""


def register(subparsers, common) -> None:
    parser = add_command(subparsers, common, "info", "show the per-layer size table of a .dcz file", DESCRIPTION, run)
    parser.add_argument("file", help="the .dcz file")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    add_max_dense_bytes(parser)


def to_plain(obj: Any) -> Any:
    """A JSON-able form of the small records formats returns (dataclasses, namedtuples, numpy scalars)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {key: to_plain(value) for key, value in dataclasses.asdict(obj).items()}
    if hasattr(obj, "_asdict"):
        return {key: to_plain(value) for key, value in obj._asdict().items()}
    if isinstance(obj, dict):
        return {str(key): to_plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(value) for value in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    return obj


def describe(path, dcz) -> dict:
    """Everything `info` shows, as one JSON-able dict."""
    report = dcz.size_report()
    return {
        "file": str(path),
        "version": list(dcz.version),
        "file_bytes": report.file_bytes,
        "graph_format": dcz.graph_format,
        "graph_bytes": len(dcz.graph),
        "metadata": to_plain(dcz.metadata),
        "tensors": [to_plain(dcz.info(name)) for name in dcz.names],
        "size_report": report.to_dict(),
    }


SHOWN_ELSEWHERE = ("dcz.", "compress.accuracy", "compress.kept_raw", "compress.linear", "compress.activations")


def scheme_lines(dcz) -> list[str]:
    """Each stored tensor's weight scheme: k-means codebook, linear grid (compress.linear) or stored values."""
    linear = dcz.metadata.get("compress.linear") or {}
    lines = []
    for name in dcz.names:
        info = dcz.info(name)
        if name in linear:
            grid = linear[name]
            scales = grid.get("scale") or []
            where = "per channel" if grid.get("axis") is not None else "per tensor"
            kind = "symmetric" if grid.get("symmetric") else "affine"
            detail = f"scale {scales[0]:.4g}" if len(scales) == 1 else f"{len(scales)} scales"
            lines.append(f"  {name}: linear {grid.get('scheme')} {kind} {where}, {detail}")
        elif info.encoding in ("shared", "sparse_shared"):
            lines.append(f"  {name}: k-means {info.label_bits}-bit codebook")
    activations = dcz.metadata.get("compress.activations") or {}
    if activations:
        method = dcz.metadata.get("compress.calib_method", "?")
        lines.append(f"  activations: {len(activations)} quantized to int8 (static scales, {method} calibration)")
    elif dcz.metadata.get("compress.dynamic"):
        lines.append("  activations: quantized at run time (dynamic int8, MatMul / Gemm)")
    return lines


def metadata_lines(metadata: dict, width: int = 110) -> list[str]:
    """One line per metadata key (long values cut; --json has them whole); keys the tables show are left out."""
    lines = []
    for key, value in sorted(metadata.items()):
        if key.startswith(SHOWN_ELSEWHERE):
            continue
        text = f"  {key} = {json.dumps(value)}"
        lines.append(text if len(text) <= width else text[: width - 3] + "...")
    return lines


def run(args) -> int:
    with open_dcz(args.file, args) as dcz:
        if args.json:
            json.dump(describe(args.file, dcz), sys.stdout, indent=2, sort_keys=True)
            print()
            return 0
        report = dcz.size_report()
        major, minor = dcz.version
        print(
            f"{args.file}: DCZ v{major}.{minor}, {report.file_bytes:,} bytes; "
            f"{len(dcz.names)} tensors; "
            + (
                f"graph: {dcz.graph_format}, {len(dcz.graph):,} bytes"
                if dcz.graph_format
                else "no graph (weights only)"
            )
        )
        lines = metadata_lines(dcz.metadata)
        if lines:
            print("metadata:")
            print("\n".join(lines))
        schemes = scheme_lines(dcz)
        if schemes:
            print("weight schemes:")
            print("\n".join(schemes))
        print()
        print(stage_table(dcz, report))
    return 0


def stage_table(dcz, sizes) -> str:
    """The compressor's Report (sizes + accuracy per stage + kept-raw reasons) if importable, else formats' table."""
    try:
        from dcz.compressor.report import Report
    except ImportError:  # a runtime-only install still shows the size table
        return sizes.to_text()
    return Report.from_dcz(dcz).to_text().rstrip()
