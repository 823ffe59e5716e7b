"""Hand-made hostile .dcz files (one per defect found by attack), and a probe that opens one in a
fresh process and reports what happened, the CPU time and the peak memory it took.

    python -m tools.dev.hostile_files             # every case: outcome, CPU s, peak MiB over baseline
    python -m tools.dev.hostile_files CASE        # one case, JSON on stdout (what tests/ call)

The regression tests (tests/formats/test_formats_amplification.py, tests/runtime/test_hostile_limits.py)
ask each case to be refused with the package's own error in < 1 s of CPU and < 100 MB over the
baseline of a process that has imported dcz and built the file.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import time

import numpy as np

from dcz import formats
from dcz.formats.layout import DCZ_LOCATION, DIR_ENTRY, STREAM_HEADER
from dcz.formats.writer import assemble


def split(data: bytes) -> list[list]:
    """[[kind, bytes], ...] of a well-formed file's sections."""
    count = struct.unpack_from("<I", data, 12)[0]
    out = []
    for i in range(count):
        off, length, _, kind, _ = DIR_ENTRY.unpack_from(data, 64 + 24 * i)
        out.append([kind, data[off : off + length]])
    return out


def join(sections) -> bytes:
    """A file from [[kind, bytes], ...] with correct offsets and CRCs."""
    return assemble([(k, bytes(b)) for k, b in sections])


def header_of(data: bytes) -> dict:
    return json.loads(split(data)[0][1])


def with_header(data: bytes, obj: dict, raw: bytes | None = None) -> bytes:
    """The file with its header replaced by `obj` as JSON, or by `raw` bytes (every CRC recomputed)."""
    secs = split(data)
    secs[0][1] = raw if raw is not None else json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return join(secs)


def stream_bytes(coding: int, width: int, count: int, counts=(), symbols=(), tail: bytes = b"") -> bytes:
    head = STREAM_HEADER.pack(coding, width, len(counts), 0, len(symbols), count)
    return head + struct.pack(f"<{len(counts)}H", *counts) + bytes(symbols) + tail


# ---------------------------------------------------------------- the cases


def chunk_index_count() -> bytes:
    """A chunked stream declaring 2^40 symbols in chunks of 1 (delta width 0): the index would be
    sized from the count (8 TB of int64) before the count was checked against the payload."""
    base = formats.dumps([formats.Shared("s", np.zeros((4, 4), np.int64), np.array([0.0, 1.0], np.float32), 1)])
    index = struct.pack("<IB3xQ", 1, 0, 1)
    secs = split(base)
    secs[3][1] = stream_bytes(2, 1, 2**40, counts=[2], symbols=[0, 1], tail=index + bytes(6900))
    return join(secs)


def huge_shared_chunked() -> bytes:
    """A (2^31, 2^31) shared tensor: 2^64 dense bytes declared by a small file."""
    data = formats.dumps([formats.Shared("s", np.zeros((4, 4), np.int64), np.array([0.0, 1.0], np.float32), 1)])
    obj = header_of(data)
    obj["tensors"][0].update(shape=[2**31, 2**31], nnz=2**62)
    return with_header(data, obj)


def zero_columns_grouped() -> bytes:
    """A shared tensor of shape [2^33, 0] with 2 row groups: 0 elements, but arange(rows) = 64 GiB."""
    book = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    data = formats.dumps([formats.Shared("s", np.zeros((4, 1), np.int64), book, 1, group_rows=2)])
    obj = header_of(data)
    obj["tensors"][0].update(shape=[2**33, 0], nnz=0, group_rows=2**32, groups=2)
    secs = split(with_header(data, obj))
    secs[3][1] = stream_bytes(0, 1, 0)
    return join(secs)


def wide_sparse() -> bytes:
    """A sparse tensor of shape [1, 2^30] with one kept weight: 4 GiB dense from ~500 bytes."""
    mask = np.zeros((1, 8), bool)
    mask[0, 0] = True
    data = formats.dumps([formats.Sparse("w", np.ones((1, 8), np.float32), mask, 2)])
    obj = header_of(data)
    obj["tensors"][0]["shape"] = [1, 2**30]
    return with_header(data, obj)


def header_at_cap() -> bytes:
    """A header of ~16 MiB (the cap): one metadata string full of escapes and brackets."""
    data = formats.dumps([])
    obj = header_of(data)
    obj["metadata"]["user.pad"] = '[{\\"' * (((16 << 20) - 200) // 7)  # '[{\"' and its JSON escapes
    return with_header(data, obj)


def header_deep() -> bytes:
    """Brackets nested 4 million deep in the header: refused on the text, before the parser."""
    data = formats.dumps([])
    secs = split(data)
    secs[0][1] = b'{"metadata":' + b"[" * (4 << 20) + b"]" * (4 << 20) + b"}"
    return join(secs)


FORMATS_CASES = {
    "chunk_index_count": chunk_index_count,
    "huge_shared_chunked": huge_shared_chunked,
    "zero_columns_grouped": zero_columns_grouped,
    "wide_sparse": wide_sparse,
    "header_at_cap": header_at_cap,
    "header_deep": header_deep,
}


def graph_300k_nodes() -> bytes:
    """An 8.7 MB file whose graph chains 300,000 Identity nodes (the node cap is 100,000)."""
    from onnx import helper

    nodes = [helper.make_node("Identity", [f"t{i}"], [f"t{i + 1}"]) for i in range(300_000)]
    io = [helper.make_tensor_value_info(n, 1, [1]) for n in ("t0", "t300000")]
    model = helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:]))
    return formats.dumps([], graph=model.SerializeToString())


def wide_sparse_model() -> bytes:
    """wide_sparse with a graph using the weight: what runtime.load sees (a 4 GiB dense weight)."""
    from onnx import TensorProto, helper

    ph = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 8], data_location=TensorProto.EXTERNAL)
    entry = ph.external_data.add()
    entry.key, entry.value = "location", DCZ_LOCATION
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [], [out], [ph]))
    mask = np.zeros((1, 8), bool)
    mask[0, 0] = True
    data = formats.dumps([formats.Sparse("w", np.ones((1, 8), np.float32), mask, 2)], graph=model.SerializeToString())
    obj = header_of(data)
    obj["tensors"][0]["shape"] = [1, 2**30]
    return with_header(data, obj)


RUNTIME_CASES = {"graph_300k_nodes": graph_300k_nodes, "wide_sparse_model": wide_sparse_model}


def _load_and_run(data: bytes) -> None:
    from dcz import runtime

    for backend in ("numpy", "ort"):
        runtime.load(data, backend=backend).close()


def _decode_everything(data: bytes) -> None:
    f = formats.loads(data)
    f.tensors()
    for name in f.names:
        if f.info(name).encoding in ("sparse", "sparse_shared"):
            f.csr(name)


# ---------------------------------------------------------------- the probe


def _peak_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (Linux >= 4.0) so the peak is the case's own


def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def probe(case: str) -> dict:
    """Build the case's file, then open and decode it; what was raised, CPU seconds, peak bytes added."""
    build, action = (
        (FORMATS_CASES[case], _decode_everything) if case in FORMATS_CASES else (RUNTIME_CASES[case], _load_and_run)
    )
    data = build()
    if action is _load_and_run:
        import dcz.runtime.model  # noqa: F401 - imports are the baseline, not the case
        import dcz.runtime.numpy_exec  # noqa: F401
        import dcz.runtime.ort_backend  # noqa: F401
    before = _vm("VmRSS")
    _peak_reset()
    t0 = time.process_time()
    try:
        action(data)
        outcome, message = "ok", ""
    except BaseException as exc:  # noqa: BLE001 - the probe reports whatever escapes
        outcome, message = type(exc).__name__, str(exc)[:300]
    return {
        "case": case,
        "bytes": len(data),
        "outcome": outcome,
        "message": message,
        "cpu_s": time.process_time() - t0,
        "peak_added": _vm("VmHWM") - before,
    }


def probe_in_subprocess(case: str, limit_bytes: int = 8 << 30) -> dict:
    """probe(case) in a fresh interpreter with its address space capped (a runaway allocation then
    fails there instead of swapping the shared machine)."""

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-m", "tools.dev.hostile_files", case],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap,
    )
    if out.returncode:
        return {"case": case, "outcome": f"exit {out.returncode}", "message": out.stderr[-500:]}
    return json.loads(out.stdout)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        print(json.dumps(probe(argv[0])))
        return 0
    for case in [*FORMATS_CASES, *RUNTIME_CASES]:
        r = probe_in_subprocess(case)
        print(
            f"{case:24s} {r.get('bytes', 0):>10,} B  {r['outcome']:12s} cpu {r.get('cpu_s', 0):.3f} s  "
            f"peak +{r.get('peak_added', 0) / 2**20:.1f} MiB  {r['message'][:90]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
