"""Version 1.4: the header section as a binary tensor table and a deflated JSON document (SPEC 2.6.2-2.6.4).

The 1.0 header spends ~210 B of JSON per tensor (~50 B after zlib) on keys, section indexes and fields that
follow from others (groups, nnz of dense encodings); here a tensor is its name (sharing a prefix with the one
before), one code byte, its dims, and only the fields its encoding needs, all as varints (~10-20 B). The
metadata stays JSON, deflated with a preset dictionary of the standard keys (SPEC 2.6.4), so a lean LeNet
document of ~300 B takes ~70 B. The decoded table goes through the same checks as a JSON one (header.check_header).
"""

from __future__ import annotations

import zlib

from .compact import inflate
from .cursor import Cursor, varint
from .entry import TensorEntry, view_2d
from .errors import FormatError
from .header import dump_json, parse_json
from .layout import ENCODINGS, MAX_NAME_BYTES, MAX_RANK, MAX_TENSORS, RAW_DTYPES, SHARED_ENCODINGS, SPARSE_ENCODINGS
from .tensors import ROLES, groups_for

DOC_PLAIN, DOC_DEFLATE = 0, 1  # how the document after the table is stored

# The preset dictionary of the deflated document (SPEC 2.6.4): fixed forever for version 1.4. Text a document
# is likely to hold (the standard metadata keys of SPEC 2.3 and their usual values), most frequent last, where
# deflate's distances are shortest. SPEC.md quotes it byte for byte; a test checks that they agree.
DICTIONARY = (
    b'"compress.activations":{"scale":"zero_point":"compress.calib_method":"minmax""entropy""percentile"'
    b'"compress.qat_activations":["compress.dynamic":true"compress.calib":{"bias_corrected":"metric":"rows":'
    b'"compress.calib.max_loss":"compress.checkpoint":{"compress.checkpoint.refit":["source.format":"safetensors"'
    b'"source.dtypes":{"BF16""compress.budget.bytes":"compress.budget.curve":[["compress.budget.allocation":[{'
    b'"compress.linear":{"bits":"per_channel":false"signed":true"symmetric":true}'
    b'"compress.dropped_unused":["compress.folded_batchnorm":["compress.skipped":{"compress.weight_sqnr_db":{'
    b'"compress.kept_raw":{"too small""not a weight""compress.layers":{".weight":".bias":"'
    b'"source.exporter":"torch.onnx.export opset "source.framework":"onnx""torch""source.model":"source.data":'
    b'"source.model_class":"source.opset":"source.producer":"pytorch""source.torch_version":"2.13.0"'
    b'"compress.config":{"by_name":{},"by_type":{},"distill_alpha":0.5,"distill_temperature":null,'
    b'"fold_batchnorm":true,"global":{"bits":"gap_bits":"huffman":true,"prune":"dns""gmp""sparsity":0.9'
    b'},"lr":0.001,"min_weights":0,"prune_epochs":0,"prune_steps":1,"seed":0,"share_epochs":0,"share_lr":null}'
    b'"compress.metric":"accuracy""compress.accuracy":{"dense":9"fine-tuned":9"pruned":9"pruned+finetuned":9'
    b'"shared":9"shared+finetuned":9},"dcz.huffman":false"dcz.huffman":true,"dcz.producer":"dcz-formats 0.1.0",'
    b'"dcz.sizes":{"dense_bytes":"huffman_bytes":"pruned_bytes":"quantized_bytes":}}}'
    b'{"graph_format":"onnx","graph_format":"onnx.zlib","graph_format":"onnx.deflate","metadata":{'
)
_ENCODING_CODE = {name: i for i, name in enumerate(ENCODINGS)}  # raw 0, sparse 1, shared 2, sparse_shared 3
_DTYPE_CODE = {name: i for i, name in enumerate(RAW_DTYPES)}  # float32 0 (every compressed encoding)


# ---------------------------------------------------------------- writer side


def encode(entries: list[TensorEntry], graph_format: str, metadata: dict) -> bytes:
    """The header section of a 1.4 file: the binary table, then the document, deflated when that is smaller."""
    out, previous = [varint(len(entries))], b""
    for e in entries:
        name = e.name.encode("utf-8")
        shared = _common_prefix(previous, name)
        out += [varint(shared), varint(len(name) - shared), name[shared:], _record(e)]
        previous = name
    doc = dump_json({"graph_format": graph_format, "metadata": metadata})
    packed = deflate(doc)
    out.append(bytes([DOC_DEFLATE]) + packed if len(packed) < len(doc) else bytes([DOC_PLAIN]) + doc)
    return b"".join(out)


def deflate(doc: bytes) -> bytes:
    """Raw DEFLATE (RFC 1951) of `doc` with the preset dictionary, level 9: the same bytes for the same input."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
    return packer.compress(doc) + packer.flush()


def _common_prefix(a: bytes, b: bytes) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _record(e: TensorEntry) -> bytes:
    """Everything of an entry after its name (SPEC 2.6.3)."""
    out = [bytes([_ENCODING_CODE[e.encoding] | _DTYPE_CODE[e.dtype] << 2, len(e.shape)])]
    out += [varint(d) for d in e.shape]
    if e.encoding == "raw":
        return b"".join(out)
    shared, sparse = e.encoding in SHARED_ENCODINGS, e.encoding in SPARSE_ENCODINGS
    out.append(bytes([(e.label_bits if shared else 0) | (e.gap_bits if sparse else 0) << 4]))
    if sparse:
        out.append(varint(e.nnz))
    if shared:
        out += [varint(e.codebook_size), varint(e.group_rows or 0)]
    return b"".join(out)


# ---------------------------------------------------------------- reader side


def read(data: bytes, at: int, n_sections: int, fail) -> dict:
    """The header object of a 1.4 header section (bytes `data`, at file offset `at`) in the form of a 1.0 JSON
    header, for header.check_header: the table's entries as JSON entries with their implied sections, and the
    document's graph_format and metadata. `fail(msg)` builds the FormatError."""
    cur = Cursor(data, 0, len(data), "section 0 (header)")
    count = cur.varint("tensor count", MAX_TENSORS)
    if count > cur.left:  # every record takes at least 3 bytes
        raise _fail(fail, cur, at, f"{count} tensors declared in {cur.left} bytes")
    tensors, previous, next_section = [], b"", 2
    for i in range(count):
        entry, previous = _read_record(cur, i, previous, at, fail)
        roles = ROLES[entry["encoding"]]
        entry["sections"] = {role: next_section + k for k, role in enumerate(roles)}
        next_section += len(roles)
        tensors.append(entry)
    if next_section != n_sections:
        raise _fail(
            fail,
            cur,
            at,
            f"the table's {count} tensors use {next_section - 2} sections, the file has "
            f"{n_sections - 2} after the header and graph",
        )
    coding = cur.uint("u8", "document coding")
    text = bytes(cur.bytes(cur.left, "document"))
    if coding == DOC_DEFLATE:
        text = inflate(text, fail, wbits=-15, zdict=DICTIONARY)
    elif coding != DOC_PLAIN:
        raise _fail(fail, cur, at, f"unknown document coding {coding} (0 plain JSON, 1 deflate)", cur.pos - 1)
    obj = parse_json(text, fail)
    if "tensors" in obj:
        raise fail("the document of a 1.4 header must not hold 'tensors' (the binary table does)")
    obj["tensors"] = tensors
    return obj


def _fail(fail, cur: Cursor, at: int, message: str, pos: int | None = None) -> FormatError:
    return fail(
        f"header byte {cur.pos if pos is None else pos} (file byte {at + (cur.pos if pos is None else pos)}): {message}"
    )


def _read_record(cur: Cursor, i: int, previous: bytes, at: int, fail) -> tuple[dict, bytes]:
    """One tensor record (SPEC 2.6.3) as a JSON tensor entry without sections, and the name's bytes."""
    shared = cur.varint(f"tensor #{i} name prefix", len(previous))
    rest = cur.varint(f"tensor #{i} name length", MAX_NAME_BYTES - shared)
    name = previous[:shared] + bytes(cur.bytes(rest, f"tensor #{i} name"))
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(fail, cur, at, f"tensor #{i} name is not UTF-8") from None
    code_at = cur.pos
    code = cur.uint("u8", f"tensor #{i} code")
    encoding, dtype = code & 3, code >> 2
    if dtype >= len(RAW_DTYPES) or (encoding and dtype):
        raise _fail(
            fail, cur, at, f"tensor #{i} {text!r}: code byte {code:#04x} names no dtype of its encoding", code_at
        )
    rank = cur.uint("u8", f"tensor #{i} rank")
    if rank > MAX_RANK:
        raise _fail(fail, cur, at, f"tensor #{i} {text!r}: rank {rank} exceeds {MAX_RANK}", cur.pos - 1)
    shape = [cur.varint(f"tensor #{i} dim {d}") for d in range(rank)]
    entry = {"name": text, "shape": shape, "dtype": RAW_DTYPES[dtype], "encoding": ENCODINGS[encoding]}
    if not encoding:
        entry["nnz"] = _numel(shape)
        return entry, name
    bits = cur.uint("u8", f"tensor #{i} bit widths")
    shared, sparse = ENCODINGS[encoding] in SHARED_ENCODINGS, ENCODINGS[encoding] in SPARSE_ENCODINGS
    if (not shared and bits & 15) or (not sparse and bits >> 4):
        raise _fail(
            fail, cur, at, f"tensor #{i} {text!r}: bit widths {bits:#04x} set a width its encoding lacks", cur.pos - 1
        )
    if sparse:
        entry["gap_bits"] = bits >> 4
        entry["nnz"] = cur.varint(f"tensor #{i} nnz")
    if shared:
        entry["label_bits"] = bits & 15
        entry["codebook_size"] = cur.varint(f"tensor #{i} codebook size", 1 << 8)
        group_rows = cur.varint(f"tensor #{i} group rows") or None
        entry["group_rows"] = group_rows
        entry["groups"] = groups_for(view_2d(tuple(shape))[0], group_rows)
        if not sparse:
            entry["nnz"] = _numel(shape)
    return entry, name


def _numel(shape: list[int]) -> int:
    """Elements of a dense encoding (raw, shared: nnz = numel); check_entry checks the product's bound first."""
    n = 1
    for d in shape:  # at most 8 dims below 2^64 each: a Python int, no wrap
        n *= d
    return n
