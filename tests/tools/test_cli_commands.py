"""Each `dcz` command driven through its entry point (dcz.cli.main) on small models built here.

The shared model is an ONNX MLP made with onnx.helper and compressed by `dcz compress model.onnx`
(the torch-free path), so most tests need neither torch nor training.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from dcz import formats  # noqa: E402
from dcz.cli import main  # noqa: E402

RNG = np.random.default_rng(0)
W1 = RNG.normal(0, 0.1, (64, 32)).astype(np.float32)
B1 = RNG.normal(0, 0.1, (64,)).astype(np.float32)
W2 = RNG.normal(0, 0.1, (10, 64)).astype(np.float32)


def build_mlp() -> onnx.ModelProto:
    """x (N, 32) -> Gemm(W1^T) -> Relu -> Gemm(W2^T) -> logits (N, 10)."""
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "fc2.weight"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [
            numpy_helper.from_array(W1, "fc1.weight"),
            numpy_helper.from_array(B1, "fc1.bias"),
            numpy_helper.from_array(W2, "fc2.weight"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dcz: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    onnx_path = folder / "mlp.onnx"
    onnx.save(build_mlp(), onnx_path)
    dcz_path = folder / "mlp.dcz"
    assert main(["compress", str(onnx_path), "--sparsity", "0.75", "--bits", "4", "-o", str(dcz_path)]) == 0
    x = RNG.normal(0, 1, (16, 32)).astype(np.float32)
    np.save(folder / "x.npy", x)
    return {"folder": folder, "onnx": onnx_path, "dcz": dcz_path, "x": x}


def reference_logits(dcz_path, x) -> np.ndarray:
    """What the compressed model must compute, from the decoded tensors in plain numpy."""
    with formats.open(dcz_path) as f:
        w1, b1, w2 = f.tensor("fc1.weight"), f.tensor("fc1.bias"), f.tensor("fc2.weight")
    return np.maximum(x @ w1.T + b1, 0) @ w2.T


# --- compress ------------------------------------------------------------------------------


def test_compress_onnx_writes_what_was_asked(files):
    with formats.open(files["dcz"]) as f:
        w1 = f.info("fc1.weight")
        assert w1.encoding == "sparse_shared"
        assert w1.label_bits == 4 and w1.codebook_size <= 16
        assert w1.nnz == pytest.approx(0.25 * W1.size, abs=2)
        assert np.unique(f.tensor("fc1.weight")).size <= 17  # 16 centroids + pruned zeros


def test_compress_prints_the_table(capsys, files, tmp_path):
    code, out, _ = cli(
        capsys, "compress", files["onnx"], "--quality", "0.5", "--bits", "fc=3", "-o", tmp_path / "q.dcz"
    )
    assert code == 0
    assert "fc1.weight" in out and f"wrote {tmp_path / 'q.dcz'}" in out
    with formats.open(tmp_path / "q.dcz") as f:
        assert f.info("fc2.weight").label_bits == 3


def test_compress_config_file_per_layer_and_command_line_override(capsys, files, tmp_path):
    config = tmp_path / "layers.toml"
    config.write_text(
        textwrap.dedent("""
        [global]
        prune = "sparsity"
        sparsity = 0.5
        [by_name."fc2.weight"]
        sparsity = 0.9
        bits = 2
    """)
    )
    code, _, err = cli(
        capsys, "compress", files["onnx"], "--config", config, "--bits", "fc1.weight=6", "-o", tmp_path / "c.dcz"
    )
    assert code == 0, err
    with formats.open(tmp_path / "c.dcz") as f:
        fc1, fc2 = f.info("fc1.weight"), f.info("fc2.weight")
    assert fc1.label_bits == 6 and fc1.nnz == pytest.approx(0.5 * W1.size, abs=2)
    assert fc2.label_bits == 2 and fc2.nnz == pytest.approx(0.1 * W2.size, abs=2)
    code, _, err = cli(
        capsys,
        "compress",
        files["onnx"],
        "--config",
        config,
        "--sparsity",
        "0.25",
        "--bits",
        "7",
        "-o",
        tmp_path / "d.dcz",
    )
    assert code == 0, err
    with formats.open(tmp_path / "d.dcz") as f:  # one value on the command line: every layer
        for name, weight in (("fc1.weight", W1), ("fc2.weight", W2)):
            assert f.info(name).label_bits == 7 and f.info(name).nnz == pytest.approx(0.75 * weight.size, abs=2)


def test_compress_json_config(capsys, files, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"global": {"prune": "threshold", "threshold": 0.05, "share": False}}))
    code, _, err = cli(capsys, "compress", files["onnx"], "--config", config, "-o", tmp_path / "j.dcz")
    assert code == 0, err
    with formats.open(tmp_path / "j.dcz") as f:
        assert f.info("fc1.weight").encoding == "sparse"
        assert np.all(np.abs(f.tensor("fc1.weight")[f.tensor("fc1.weight") != 0]) >= 0.05)


@pytest.mark.parametrize(
    "option, newer_from, graph_format",
    [
        ("--range-coding", (1, 3), None),  # skewed 3-bit labels: the range coder wins somewhere
        ("--compact-container", (1, 4), "onnx.deflate"),
    ],
)
def test_compress_option_is_smaller_and_runs_the_same(capsys, files, tmp_path, option, newer_from, graph_format):
    """A newer-format writing option gives a smaller file with the same tensors and the same outputs."""
    settings = ["--sparsity", "0.9", "--bits", "3", "--gap-bits", "6"]
    for name, extra in (("plain.dcz", []), ("newer.dcz", [option])):
        code, _, err = cli(capsys, "compress", files["onnx"], *settings, *extra, "-o", tmp_path / name)
        assert code == 0, err
    plain, newer = tmp_path / "plain.dcz", tmp_path / "newer.dcz"
    assert newer.stat().st_size < plain.stat().st_size
    with formats.open(plain) as a, formats.open(newer) as b:
        assert a.version < newer_from <= b.version
        assert graph_format is None or b.graph_format == graph_format
        assert a.names == b.names
        for name in a.names:
            np.testing.assert_array_equal(a.tensor(name), b.tensor(name))
    x = files["x"]
    code, _, err = cli(capsys, "run", newer, "--input", files["folder"] / "x.npy", "--output", tmp_path / "y.npy")
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), reference_logits(plain, x), rtol=1e-5, atol=1e-5)


def test_python_api_range_coding_is_smaller_and_decodes_the_same(tmp_path):
    import dcz

    config = {"global": {"prune": "sparsity", "sparsity": 0.9, "bits": 3, "gap_bits": 6}}
    model = build_mlp().SerializeToString()
    dcz.compress(model, config=config, out=tmp_path / "plain.dcz")
    dcz.compress(model, config=config, out=tmp_path / "range.dcz", range_coding=True)
    assert (tmp_path / "range.dcz").stat().st_size < (tmp_path / "plain.dcz").stat().st_size
    with formats.open(tmp_path / "plain.dcz") as a, formats.open(tmp_path / "range.dcz") as b:
        assert b.version >= (1, 3)
        for name in a.names:
            np.testing.assert_array_equal(a.tensor(name), b.tensor(name))
    with pytest.raises(dcz.DczError, match="range_coding: not with budget"):
        dcz.compress(model, budget=4096, range_coding=True)


def test_python_api_compact_container(tmp_path):
    import dcz

    config = {"global": {"prune": "sparsity", "sparsity": 0.9, "bits": 3, "gap_bits": 6}}
    model = build_mlp().SerializeToString()
    dcz.compress(model, config=config, out=tmp_path / "plain.dcz")
    dcz.compress(model, config=config, out=tmp_path / "compact.dcz", compact_container=True, range_coding=True)
    assert (tmp_path / "compact.dcz").stat().st_size < (tmp_path / "plain.dcz").stat().st_size
    with formats.open(tmp_path / "plain.dcz") as a, formats.open(tmp_path / "compact.dcz") as b:
        assert b.version == (1, 4)
        for name in a.names:
            np.testing.assert_array_equal(a.tensor(name), b.tensor(name))
    with pytest.raises(dcz.DczError, match="compact_container: not with budget"):
        dcz.compress(model, budget=4096, compact_container=True)


def test_compact_container_is_refused_with_a_budget(capsys, files, tmp_path):
    argv = ["compress", files["onnx"], "--budget", "4KB", "--calib", files["folder"] / "x.npy", "--compact-container"]
    code, _, err = cli(capsys, *argv, "-o", tmp_path / "b.dcz")
    assert code == 2 and "--compact-container is not available with --budget" in one_line_error(err)


def test_range_coding_is_refused_with_a_budget(capsys, files, tmp_path):
    argv = ["compress", files["onnx"], "--budget", "4KB", "--calib", files["folder"] / "x.npy", "--range-coding"]
    code, _, err = cli(capsys, *argv, "-o", tmp_path / "b.dcz")
    assert code == 2 and "--range-coding is not available with --budget" in one_line_error(err)


@pytest.mark.parametrize(
    "argv, fragments, code",
    [
        (["--config", "bad.toml"], ["unknown key 'bitz'", "config.global"], 1),
        (["--bits", "9"], ["argument --bits: must be an integer in 1..8, got 9"], 2),
        (["--bits", "conv=0"], ["argument --bits: ", "got 0"], 2),
        (["--gap-bits", "fc1.weight=12"], ["argument --gap-bits: ", "got 12"], 2),
        (["--sparsity", "1.5"], ["argument --sparsity: must be in [0, 1), got 1.5"], 2),
        (["--quality", "-1"], ["argument --quality: "], 2),
        (["--seed", "-3"], ["argument --seed: "], 2),
        (["--bits", "conv=x"], ["--bits", "'x'"], 2),
        (["--sparsity", "0.5", "--quality", "1"], ["not allowed with"], 2),
        (["--weights", "w.pt"], ["--weights is for PyTorch models"], 2),
        (["--config", "broken.toml"], ["cannot parse config file"], 1),
    ],
)
def test_compress_bad_settings_are_one_line(capsys, files, tmp_path, monkeypatch, argv, fragments, code):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_text("[global]\nbitz = 3\n")
    (tmp_path / "broken.toml").write_text("[global\nbits = 3\n")
    got, _, err = cli(capsys, "compress", files["onnx"], *argv, "-o", tmp_path / "x.dcz")
    line = one_line_error(err)
    assert got == code
    for fragment in fragments:
        assert fragment in line
    assert not (tmp_path / "x.dcz").exists()


def test_compress_bad_model_spec(capsys, tmp_path):
    code, _, err = cli(capsys, "compress", "no_such_module_xyz:make", "--input-shape", "1,4", "-o", tmp_path / "x.dcz")
    assert code == 1 and "cannot import module 'no_such_module_xyz'" in one_line_error(err)
    code, _, err = cli(capsys, "compress", "justaname", "-o", tmp_path / "x.dcz")
    assert code == 2 and "neither an .onnx file nor package.module:factory" in one_line_error(err)


# --- info / report -------------------------------------------------------------------------


def test_info_text_and_json(capsys, files):
    code, out, _ = cli(capsys, "info", files["dcz"])
    assert code == 0
    assert "DCZ v1." in out and "fc1.weight" in out and "sparse_shared" in out and "total" in out
    code, out, _ = cli(capsys, "info", files["dcz"], "--json")
    document = json.loads(out)
    assert document["file_bytes"] == files["dcz"].stat().st_size
    assert {t["name"] for t in document["tensors"]} == {"fc1.weight", "fc1.bias", "fc2.weight"}


def test_report_fits_and_does_not(capsys, files):
    size = files["dcz"].stat().st_size
    code, out, _ = cli(capsys, "report", files["dcz"], "--budget", str(size))
    assert code == 0 and out.startswith("FITS") and "0 B (0.0%) to spare" in out
    code, out, _ = cli(capsys, "report", files["dcz"], "--budget", str(size - 100), "--check")
    assert code == 1 and out.startswith("DOES NOT FIT") and "100 B" in out
    assert "fc1.weight" in out.split("what if")[0]  # the byte holders table
    assert "ESTIMATED" in out


def test_report_json_and_what_if_estimate_tracks_the_file(capsys, files):
    code, out, _ = cli(capsys, "report", files["dcz"], "--budget", "1MiB", "--json")
    document = json.loads(out)
    assert code == 0 and document["fits"] is True and document["budget"] == 1024**2
    assert document["what_if_is_estimate"] is True
    as_now = document["what_if_estimated_bytes"]["as now"]["as now"]
    assert abs(as_now - document["file_bytes"]) / document["file_bytes"] < 0.15
    grid = document["what_if_estimated_bytes"]
    assert grid["95%"]["2 bits"] < grid["50%"]["8 bits"]  # fewer weights and bits: smaller


@pytest.mark.parametrize(
    "command", [["info"], ["report", "--budget", "1KB"], ["run", "--input", "x.npy"], ["export-onnx", "-o", "o.onnx"]]
)
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_malformed_file_is_one_line(capsys, files, tmp_path, monkeypatch, command, damage):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", files["x"])
    bad = tmp_path / "bad.dcz"
    data = files["dcz"].read_bytes()
    bad.write_bytes(b"this is not a dcz file at all" * 10 if damage == "garbage" else data[: len(data) // 2])
    code, _, err = cli(capsys, command[0], bad, *command[1:])
    assert code == 1
    line = one_line_error(err)
    assert f"{bad} is not a valid .dcz file" in line
    assert not (tmp_path / "o.onnx").exists()


# --- --max-dense-bytes ----------------------------------------------------------------------

OPENING_COMMANDS = [
    ["info"],
    ["report", "--budget", "1KB"],
    ["run", "--input", "x.npy"],
    ["export-onnx", "-o", "o.onnx"],
    ["export-safetensors", "-o", "o.safetensors"],
    ["plot", "bytes", "-o", "b.png"],
    ["plot", "weights", "-o", "w.png"],
]


def _run_opening(capsys, files, command, *extra):
    if command[0] == "plot":
        return cli(capsys, *command[:2], files["dcz"], *command[2:], *extra)
    return cli(capsys, command[0], files["dcz"], *command[1:], *extra)


@pytest.mark.parametrize("command", OPENING_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_dense_budget_error_names_the_flag_and_the_flag_opens_the_file(capsys, files, tmp_path, monkeypatch, command):
    """fc1.weight decodes to 8,192 bytes (all three tensors to 11,008): a budget below that is refused in
    command-line terms (the flag and a size that works, not the Python max_dense_bytes=); the size it
    suggests opens the file (run caps the sum too, so it may ask a second time)."""
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", files["x"])
    budget, asked = "8191", []
    for _ in range(3):
        code, _, err = _run_opening(capsys, files, command, "--max-dense-bytes", budget)
        if code == 0:
            break
        line = one_line_error(err)
        assert code == 1 and "max_dense_bytes=" not in line and "not a valid .dcz" not in line, line
        assert "dense bytes" in line and "(raise it with --max-dense-bytes " in line, line
        budget = line.split("--max-dense-bytes ")[1].split()[0]
        asked.append(budget)
    assert code == 0, err
    assert asked == (["8.2KB", "11.1KB"] if command[0] == "run" else ["8.2KB"])


def test_dense_budget_default_refuses_a_huge_declared_tensor_until_the_flag_raises_it(capsys, tmp_path):
    from tools.dev.hostile_files import wide_sparse

    path = tmp_path / "wide.dcz"
    path.write_bytes(wide_sparse())  # ~500 bytes declaring a 4 GiB tensor
    code, _, err = cli(capsys, "info", path)
    line = one_line_error(err)
    assert code == 1 and "tensor 'w' declares 4,294,967,296 dense bytes" in line, line
    assert "2,147,483,648-byte budget (raise it with --max-dense-bytes 4.3GB if the file is trusted)" in line
    code, out, err = cli(capsys, "info", path, "--max-dense-bytes", "4.3GB")
    assert code == 0 and "w" in out, err


@pytest.mark.parametrize("value", ["0", "lots", "-5", "2XB"])
@pytest.mark.parametrize("command", [["info"], ["run", "--input", "x.npy"], ["plot", "bytes"]])
def test_dense_budget_bad_values_are_usage_errors(capsys, files, command, value):
    code, _, err = _run_opening(capsys, files, command, "--max-dense-bytes", value)
    assert code == 2 and "--max-dense-bytes" in one_line_error(err), err


# --- run / export-onnx ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["ort", "numpy"])
def test_run_both_backends(capsys, files, tmp_path, backend):
    out_path = tmp_path / "y.npy"
    code, out, _ = cli(
        capsys, "run", files["dcz"], "--input", files["folder"] / "x.npy", "--backend", backend, "--output", out_path
    )
    assert code == 0 and "logits: shape (16, 10)" in out
    np.testing.assert_allclose(np.load(out_path), reference_logits(files["dcz"], files["x"]), rtol=1e-5, atol=1e-5)


def test_run_npz_and_float64_input(capsys, files, tmp_path):
    np.savez(tmp_path / "x.npz", x=files["x"].astype(np.float64))
    code, _, err = cli(capsys, "run", files["dcz"], "--input", tmp_path / "x.npz", "--output", tmp_path / "y.npz")
    assert code == 0, err
    with np.load(tmp_path / "y.npz") as y:
        np.testing.assert_allclose(y["logits"], reference_logits(files["dcz"], files["x"]), rtol=1e-5, atol=1e-5)


def test_run_refuses_pickles_and_bad_arrays(capsys, files, tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = cli(capsys, "run", files["dcz"], "--input", tmp_path / "obj.npy")
    assert code == 1 and "obj.npy" in one_line_error(err)
    np.save(tmp_path / "wrong.npy", np.zeros((2, 7), np.float32))
    code, _, err = cli(capsys, "run", files["dcz"], "--input", tmp_path / "wrong.npy")
    assert code == 1
    one_line_error(err)
    code, _, err = cli(capsys, "run", files["dcz"], "--input", files["folder"] / "x.npy", "--backend", "tpu")
    assert code == 2 and "invalid choice" in one_line_error(err)
    code, _, err = cli(capsys, "run", files["dcz"], "--input", files["folder"] / "x.npy", "--threads", "-1")
    assert code == 2 and one_line_error(err).startswith("dcz: error: argument --threads: must be >= 0")


def test_training_methods_on_onnx_are_refused_not_ignored(capsys, files, tmp_path):
    """prune 'gmp' on an ONNX model used to compress without pruning anything."""
    config = tmp_path / "gmp.toml"
    config.write_text('[global]\nprune = "gmp"\nsparsity = 0.5\n')
    code, _, err = cli(capsys, "compress", files["onnx"], "--config", config, "-o", tmp_path / "g.dcz")
    assert code == 1 and "prune 'gmp' prunes while training a PyTorch model" in one_line_error(err)
    assert not (tmp_path / "g.dcz").exists()


def test_export_onnx_matches(capsys, files, tmp_path):
    target = tmp_path / "dense.onnx"
    code, out, _ = cli(capsys, "export-onnx", files["dcz"], "-o", target)
    assert code == 0 and "wrote" in out
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"x": files["x"]})[0]
    np.testing.assert_allclose(logits, reference_logits(files["dcz"], files["x"]), rtol=1e-5, atol=1e-5)
    code, _, err = cli(capsys, "export-onnx", files["dcz"], "-o", tmp_path / "no" / "such" / "dir.onnx")
    assert code == 1 and "does not exist" in one_line_error(err)


# --- plots ---------------------------------------------------------------------------------


def is_png(path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_plot_bytes_and_weights(capsys, files, tmp_path):
    pytest.importorskip("matplotlib")
    code, _, err = cli(capsys, "plot", "bytes", files["dcz"], "-o", tmp_path / "b.png")
    assert code == 0 and is_png(tmp_path / "b.png"), err
    code, _, err = cli(capsys, "plot", "weights", files["dcz"], "--before", files["onnx"], "-o", tmp_path / "w.png")
    assert code == 0 and is_png(tmp_path / "w.png"), err
    code, _, err = cli(capsys, "plot", "weights", files["dcz"], "--layer", "nope", "-o", tmp_path / "n.png")
    assert code == 1 and "no tensor 'nope'" in one_line_error(err)


def test_plot_sweep_on_labelled_data(capsys, files, tmp_path):
    pytest.importorskip("matplotlib")
    x = RNG.normal(0, 1, (200, 32)).astype(np.float32)
    y = (np.maximum(x @ W1.T + B1, 0) @ W2.T).argmax(1)  # the dense model's own answers: 100% at threshold 0
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    code, out, err = cli(
        capsys,
        "plot",
        "sweep",
        files["onnx"],
        "--data",
        tmp_path / "xy.npz",
        "--thresholds",
        "0,1,3",
        "-o",
        tmp_path / "s.png",
    )
    assert code == 0 and is_png(tmp_path / "s.png"), err
    rows = [line for line in out.splitlines() if line.startswith("threshold")]
    assert len(rows) == 3 and "accuracy 100.00%" in rows[0]
    sparsity = [float(row.rsplit("sparsity", 1)[1].strip(" %")) / 100 for row in rows]
    for quality, measured in zip((0, 1, 3), sparsity):
        expected = sum(int((np.abs(w) < quality * w.std()).sum()) for w in (W1, W2)) / (W1.size + W2.size)
        assert measured == pytest.approx(expected, abs=0.001)


def test_onnx_runtime_log_lines_do_not_precede_the_error(tmp_path):
    """An input graph ORT warns about (an unused initializer): stderr holds DCZ's lines only."""
    import subprocess
    import sys

    model = build_mlp()
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "unused"))
    onnx.save(model, tmp_path / "u.onnx")
    np.save(tmp_path / "x.npy", np.zeros((2, 32), np.float32))
    dcz = [sys.executable, "-c", "import sys; from dcz.cli import main; sys.exit(main())"]
    for argv in (["compress", "u.onnx", "-o", "u.dcz"], ["run", "u.dcz", "--input", "x.npy"]):
        done = subprocess.run(dcz + argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert "onnxruntime" not in done.stderr, done.stderr
        assert all(line.startswith("dcz: error: ") for line in done.stderr.splitlines()), done.stderr
