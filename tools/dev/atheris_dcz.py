"""Coverage-guided fuzzing (atheris, libFuzzer) of every public way into a .dcz file.

Each input is a .dcz file. It is opened with dcz.formats (every tensor decoded, CSR forms too) and
then, when it carries a graph, loaded and run by dcz.runtime on both backends. Anything raised that
is not a dcz.DczError, any input over 1 s, and any peak memory above 64 MiB + 2x the dense bytes the
file declares is a finding (the harness raises, libFuzzer saves the input as crash-*).

    python -m tools.dev.atheris_dcz --make-corpus tools/dev/corpus      # write the seed corpus
    python -m tools.dev.atheris_dcz tools/dev/corpus -max_total_time=1800 -rss_limit_mb=4096
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

SLOW_S = 1.0
BASE_MEMORY = 64 << 20


def seed_files() -> dict[str, bytes]:
    """Small valid files: every encoding, every stream coding, and a graph run by both backends."""
    from tools.dev.fuzz_formats import seed_files as format_seeds

    out = {f"formats_{i}.dcz": data for i, data in enumerate(format_seeds())}
    out["model_mlp.dcz"] = _tiny_model()
    out["model_mlp_compact.dcz"] = _tiny_model(compact=True)  # version 1.4 (SPEC 2.6), graph "onnx.deflate"
    return out


def _tiny_model(compact: bool = False) -> bytes:
    """A 2-layer MLP (Gemm, Relu, Gemm) with a pruned, a shared and a raw weight; compact: in the compact
    container with the graph as "onnx.deflate" (SPEC 2.5.1), as the LeNet frontier files are written."""
    from onnx import TensorProto, helper

    from dcz import formats

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 6)).astype(np.float32)
    mask = rng.random((8, 6)) < 0.5
    labels = rng.integers(0, 4, (6, 3))
    book = np.array([-1.0, -0.5, 0.5, 1.0], np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "w2"], ["y"], name="fc2"),
    ]
    inits = []
    for name, shape in (("w1", (8, 6)), ("b1", (6,)), ("w2", (6, 3))):
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape)
        t.data_location = TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", "dcz"
        inits.append(t)
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # fixed, not this onnx's newest: the committed corpus stays byte-identical
    tensors = [
        formats.Sparse("w1", w1, mask, 2),
        formats.Raw("b1", np.zeros(6, np.float32)),
        formats.Shared("w2", labels, book, 2),
    ]
    if compact:
        from dcz.formats.graph_codec import GRAPH_FORMAT_DEFLATE, deflate_graph

        graph = deflate_graph(model.SerializeToString())
        return formats.dumps(tensors, graph=graph, graph_format=GRAPH_FORMAT_DEFLATE, compact_container=True)
    return formats.dumps(tensors, graph=model.SerializeToString(), graph_format="onnx")


def make_corpus(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    for name, data in seed_files().items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


def _declared_dense(f) -> int:
    return sum(int(np.prod(f.info(n).shape, dtype=object)) * np.dtype(f.info(n).dtype).itemsize for n in f.names)


def one_input(data: bytes) -> None:
    """Open, decode and run one file; only DczError may escape, within time and memory."""
    # file length and every CRC made right, so mutations reach the checks behind them
    from tools.dev.fuzz_formats import fix_checksums  # imported late: see main()

    data = fix_checksums(data)
    from dcz import formats, runtime
    from dcz.formats.errors import DczError

    before = _reset_peak()
    t0 = time.process_time()  # CPU time (all threads): the machine is shared, wall time is noise
    declared = 0
    try:
        f = formats.loads(data)
        declared = _declared_dense(f)
        f.tensors()
        for name in f.names:
            if f.info(name).encoding in ("sparse", "sparse_shared"):
                f.csr(name)
        if f.graph:
            for backend in ("numpy", "ort"):
                with runtime.load(data, backend=backend) as model:
                    feeds = {
                        name: np.zeros([d if isinstance(d, int) and 0 < d < 64 else 1 for d in shape], np.float32)
                        for name, shape in _input_shapes(model)
                    }
                    model.run(feeds)
    except DczError:
        pass
    elapsed = time.process_time() - t0
    if elapsed > SLOW_S:
        raise RuntimeError(f"slow input: {elapsed:.2f} s")
    added = _status("VmHWM") - before
    if added > BASE_MEMORY + 2 * declared:
        raise RuntimeError(
            f"this input raised peak RSS by {added >> 20} MiB: over 64 MiB + 2 x {declared} declared bytes"
        )


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> int:
    """Reset the process's peak RSS to its current RSS (Linux: clear_refs 5) and return it, so each
    input is measured on its own (the lifetime peak drifts up as libFuzzer's corpus grows)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def _input_shapes(model):
    for vi in model.onnx_model.graph.input:
        if vi.name in model.placeholders:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
        yield vi.name, dims


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--make-corpus":
        make_corpus(sys.argv[2])
        return
    import atheris

    # instrument_imports only instruments modules first imported inside it: a dcz module imported earlier
    # (tools.dev.fuzz_formats imports dcz.formats) would be fuzzed without coverage feedback.
    early = sorted(m for m in sys.modules if m == "dcz" or m.startswith("dcz."))
    if early:
        raise SystemExit(f"atheris_dcz: {early[0]} was imported before instrumentation; its coverage would be blind")
    with atheris.instrument_imports():
        import dcz.formats  # noqa: F401
        import dcz.runtime  # noqa: F401
        import dcz.runtime.model  # noqa: F401
        import dcz.runtime.numpy_exec.executor  # noqa: F401
        import dcz.runtime.ort_backend  # noqa: F401
    import onnxruntime  # noqa: F401 - imported before the baseline is taken

    one_input(seed_files()["model_mlp.dcz"])  # warm every import and ORT's first session before fuzzing
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
