"""The header section: strict canonical JSON holding metadata and the tensor table.

Writers emit `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True)`, so equal
inputs give equal bytes. Readers accept only what SPEC.md allows: no duplicate keys, no NaN or
Infinity, bounded depth, every field typed and range-checked; unknown keys are ignored.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from .entry import TensorEntry, view_2d
from .errors import FormatError
from .layout import (
    ENCODINGS,
    MAX_ELEMENTS,
    MAX_JSON_DEPTH,
    MAX_NAME_BYTES,
    MAX_RANK,
    MAX_TENSORS,
    RAW_DTYPES,
    SHARED_ENCODINGS,
    SPARSE_ENCODINGS,
)
from .tensors import ROLES, groups_for

KEY_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
GRAPH_FORMAT_RE = re.compile(r"^[a-z0-9_.-]{0,64}$")


def dump_json(obj) -> bytes:
    """Canonical JSON bytes of `obj`."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def check_metadata_value(value, key: str, depth: int = 0) -> None:
    """Raise FormatError unless `value` is JSON-like (str, int, float, bool, None, list, dict)."""
    if depth > MAX_JSON_DEPTH // 2:
        raise FormatError(f"metadata {key!r}: nested deeper than {MAX_JSON_DEPTH // 2}")
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise FormatError(f"metadata {key!r}: {value} is not representable in JSON")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            check_metadata_value(item, key, depth + 1)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise FormatError(f"metadata {key!r}: dict keys must be str, got {k!r}")
            check_metadata_value(item, key, depth + 1)
        return
    raise FormatError(f"metadata {key!r}: {type(value).__name__} is not JSON-like")


def check_metadata_keys(metadata: dict, writer: bool) -> None:
    """Keys are namespaced `ns.key`, lowercase; writers may not set the reserved `dcz.*`."""
    for key in metadata:
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise FormatError(f"metadata key {key!r} must be namespaced lowercase 'ns.key' ([a-z0-9_] parts)")
        if writer and key.startswith("dcz."):
            raise FormatError(f"metadata key {key!r}: the dcz.* namespace is reserved for the writer")


# ---------------------------------------------------------------- reading


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constants(name):
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} overflows a double")
    return value


def parse_json(data: bytes, fail) -> dict:
    """Parse the header bytes strictly; `fail(msg)` builds the FormatError.

    Order (SPEC.md section 5): UTF-8, then the nesting depth on the text, then the parse, so a
    hostile depth is refused before the parser sees it. Every step is linear in the header size.
    """
    raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"header is not UTF-8 ({exc.reason} at header byte {exc.start})") from None
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise fail(f"header JSON nests {depth} levels, limit {MAX_JSON_DEPTH}")
    try:
        obj = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants, parse_float=_finite_float
        )
    except RecursionError:
        raise fail(f"header JSON nests deeper than the limit {MAX_JSON_DEPTH}") from None
    except ValueError as exc:
        raise fail(f"header is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise fail("header JSON must be an object")
    return obj


_DEPTH_BLOCK = 1 << 20  # bytes per numpy step: temporaries stay ~10 MB whatever the header size
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def json_depth(raw: bytes) -> int:
    """Deepest bracket nesting of JSON text, brackets inside strings ignored: linear time, no regex,
    no parse (so it can run before the parser). Escapes are removed first (`\\\\` pairs, then
    escaped quotes), after which every quote opens or closes a string; text that is not valid JSON
    may get a wrong depth here but is refused by the parser."""
    bare = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    deepest, depth, inside = 0, 0, 0
    for lo in range(0, len(bare), _DEPTH_BLOCK):
        block = np.frombuffer(bare, dtype=np.uint8, count=min(_DEPTH_BLOCK, len(bare) - lo), offset=lo)
        quotes = np.cumsum(block == ord('"'), dtype=np.int32)
        in_string = ((quotes + inside) & 1).astype(bool)  # a closing quote itself counts as inside: harmless
        step = _OPEN[block]
        step[in_string] = 0
        levels = np.cumsum(step, dtype=np.int32)
        if levels.size:
            deepest = max(deepest, depth + int(levels.max()))
            depth += int(levels[-1])
            inside = (inside + int(quotes[-1])) & 1
    return deepest


def _int(entry: dict, key: str, lo: int, hi: int, fail, optional: bool = False):
    value = entry.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise fail(f"field {key!r} must be an int in {lo}..{hi}, got {value!r}")
    return value


def check_entry(entry, index: int, n_sections: int, fail) -> TensorEntry:
    """Validate one tensor-table entry (a JSON object) and return it as a TensorEntry."""
    if not isinstance(entry, dict):
        raise fail(f"tensor #{index} must be an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise fail(f"tensor #{index}: name must be a non-empty str of at most {MAX_NAME_BYTES} bytes")

    def tfail(msg):
        return fail(f"tensor #{index} {name!r}: {msg}")

    shape = entry.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise tfail(f"shape must be a list of at most {MAX_RANK} dims")
    numel = 1
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise tfail(f"shape {shape} has a dim that is not a non-negative int")
        numel *= d
        if numel > MAX_ELEMENTS:
            raise tfail(f"shape {shape} has more than 2**63 - 1 elements")
    encoding = entry.get("encoding")
    if encoding not in ENCODINGS:
        raise tfail(f"unknown encoding {encoding!r} (known: {', '.join(ENCODINGS)})")
    dtype = entry.get("dtype")
    if encoding == "raw":
        if dtype not in RAW_DTYPES:
            raise tfail(f"raw dtype {dtype!r} not one of {', '.join(RAW_DTYPES)}")
    elif dtype != "float32":
        raise tfail(f"dtype of a {encoding} tensor must be 'float32', got {dtype!r}")
    fields: dict = {"nnz": _int(entry, "nnz", 0, numel, tfail)}
    if encoding == "raw" and fields["nnz"] != numel:
        raise tfail(f"nnz of a raw tensor must equal its {numel} elements")
    if encoding in SHARED_ENCODINGS:
        rows, _ = view_2d(tuple(shape))
        bits = fields["label_bits"] = _int(entry, "label_bits", 1, 8, tfail)
        fields["codebook_size"] = _int(entry, "codebook_size", 1, 1 << bits, tfail)
        group_rows = fields["group_rows"] = _int(entry, "group_rows", 1, MAX_ELEMENTS, tfail, optional=True)
        groups = fields["groups"] = _int(entry, "groups", 1, MAX_ELEMENTS, tfail)
        if groups != groups_for(rows, group_rows):
            raise tfail(f"groups {groups} inconsistent with {rows} rows and group_rows {group_rows}")
        if encoding == "shared" and fields["nnz"] != numel:
            raise tfail(f"nnz of a shared tensor must equal its {numel} elements")
    if encoding in SPARSE_ENCODINGS:
        fields["gap_bits"] = _int(entry, "gap_bits", 1, 8, tfail)
    sections = entry.get("sections")
    if not isinstance(sections, dict) or set(sections) != set(ROLES[encoding]):
        raise tfail(f"sections must map exactly {', '.join(ROLES[encoding])} to section indices")
    for role in ROLES[encoding]:
        idx = sections[role]
        if isinstance(idx, bool) or not isinstance(idx, int) or not 2 <= idx < n_sections:
            raise tfail(f"section index for {role!r} must be an int in 2..{n_sections - 1}, got {idx!r}")
    roles = {role: sections[role] for role in ROLES[encoding]}
    return TensorEntry(name, tuple(shape), dtype, encoding, sections=roles, **fields)


def check_header(obj: dict, n_sections: int, fail) -> tuple[dict, str, list[TensorEntry]]:
    """Validate the header object: (metadata, graph_format, tensor entries)."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        raise fail("'metadata' must be an object")
    try:
        check_metadata_keys(metadata, writer=False)
    except FormatError as exc:
        raise fail(str(exc)) from None
    graph_format = obj.get("graph_format")
    if not isinstance(graph_format, str) or not GRAPH_FORMAT_RE.match(graph_format):
        raise fail(f"'graph_format' must match {GRAPH_FORMAT_RE.pattern}, got {graph_format!r}")
    tensors = obj.get("tensors")
    if not isinstance(tensors, list) or len(tensors) > MAX_TENSORS:
        raise fail(f"'tensors' must be a list of at most {MAX_TENSORS} entries")
    entries = [check_entry(e, i, n_sections, fail) for i, e in enumerate(tensors)]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise fail(f"tensor name {dup!r} appears twice")
    return metadata, graph_format, entries
