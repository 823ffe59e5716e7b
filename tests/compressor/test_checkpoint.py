"""Safetensors checkpoints in and out: weights-only .dcz, shards, dtypes, workers, Dask, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from dcz import formats
from dcz.cli import main
from dcz.compressor.checkpoint import Settings, compress_checkpoint
from dcz.compressor.checkpoint_read import load, read_checkpoint
from dcz.compressor.errors import CompressError
from dcz.runtime.safetensors_out import export_safetensors, f32_to_bf16_bits, iter_tensors
from tools.bench.ckpt_synth import write_checkpoint

SMALL = dict(layers=1, hidden=128, inter=352, vocab=500)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    return write_checkpoint(folder / "one", **SMALL), write_checkpoint(folder / "sharded", shards=3, **SMALL)


def test_bf16_checkpoint_round_trip(llama, tmp_path):
    single, _ = llama
    summary = compress_checkpoint(single, tmp_path / "m.dcz", workers=1, progress=False)
    assert (
        summary["dense_bytes"] / summary["file_bytes"] > 3.0
    )  # 4-bit labels + <= 1 bit of codebook per weight vs bf16
    export_safetensors(tmp_path / "m.dcz", tmp_path / "out.safetensors")
    from safetensors import safe_open

    with safe_open(str(single), "pt") as a, safe_open(str(tmp_path / "out.safetensors"), "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        for name in a.keys():
            x, y = a.get_tensor(name), b.get_tensor(name)
            assert y.dtype == x.dtype and y.shape == x.shape
            if x.ndim == 1:  # norms: kept raw, bit-exact through float32
                assert (x == y).all(), name
            else:  # 4-bit palettized: close, and far better than a random guess
                x, y = x.float().numpy(), y.float().numpy()
                snr = 10 * np.log10((x**2).sum() / ((x - y) ** 2).sum())
                assert snr > 18, (name, snr)


def test_sharded_input_gives_the_same_file(llama, tmp_path):
    single, sharded = llama
    compress_checkpoint(single, tmp_path / "a.dcz", workers=1, progress=False)
    compress_checkpoint(sharded, tmp_path / "b.dcz", workers=2, progress=False)
    assert (tmp_path / "a.dcz").read_bytes() == (tmp_path / "b.dcz").read_bytes()


def test_dask_local_cluster_writes_the_same_bytes(llama, tmp_path):
    pytest.importorskip("dask.distributed")
    single, _ = llama
    compress_checkpoint(single, tmp_path / "a.dcz", workers=1, progress=False)
    compress_checkpoint(single, tmp_path / "d.dcz", workers=2, scheduler="local", progress=False)
    assert (tmp_path / "a.dcz").read_bytes() == (tmp_path / "d.dcz").read_bytes()


def test_dtypes_kept(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "f32": rng.standard_normal((64, 100)).astype(np.float32),
        "f16": rng.standard_normal((64, 100)).astype(np.float16),
        "small16": rng.standard_normal((3, 5)).astype(np.float16),
        "ids": np.arange(10, dtype=np.int64),
        "i8": rng.integers(-5, 5, (80, 80)).astype(np.int8),
    }
    save_file(tensors, str(tmp_path / "m.safetensors"))
    compress_checkpoint(tmp_path / "m.safetensors", tmp_path / "m.dcz", Settings(bits=4), workers=1, progress=False)
    with formats.open(tmp_path / "m.dcz") as f:
        assert f.graph == b"" and f.graph_format == ""
        assert {n: f.info(n).encoding for n in f.names} == {
            "f32": "shared",
            "f16": "shared",
            "small16": "raw",
            "ids": "raw",
            "i8": "raw",
        }
    out = dict(iter_tensors(tmp_path / "m.dcz"))
    for name in ("small16", "ids", "i8"):
        assert out[name].dtype == tensors[name].dtype
        np.testing.assert_array_equal(out[name], tensors[name])
    assert out["f16"].dtype == np.float16


def test_sharded_output_with_index(llama, tmp_path):
    single, _ = llama
    compress_checkpoint(single, tmp_path / "m.dcz", workers=1, progress=False)
    assert main(["export-safetensors", str(tmp_path / "m.dcz"), "-o", str(tmp_path / "o.safetensors"),
                 "--max-shard-size", "400KB"]) == 0  # fmt: skip
    index = json.loads((tmp_path / "o.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2 and shards[0] == f"o-00001-of-{len(shards):05d}.safetensors"
    refs = {r.name: r for r in read_checkpoint(tmp_path / "o.safetensors.index.json")}  # the shards read back
    for name, arr in iter_tensors(tmp_path / "m.dcz", bf16_bits=True):
        np.testing.assert_array_equal(load(refs[name]), arr)


def test_cli_compress(llama, tmp_path, capsys):
    single, _ = llama
    assert main(["compress", str(single), "-o", str(tmp_path / "c.dcz"), "--workers", "1", "--group-rows", "4",
                 "--sensitivity", "magnitude", "--bits", "3"]) == 0  # fmt: skip
    assert "tensors" in capsys.readouterr().out
    with formats.open(tmp_path / "c.dcz") as f:
        info = f.info("model.layers.0.mlp.up_proj.weight")
        assert info.label_bits == 3 and info.groups == 352 // 4
    assert main(["info", str(tmp_path / "c.dcz")]) == 0
    assert "no graph (weights only)" in capsys.readouterr().out.splitlines()[0]


def test_cli_refuses_onnx_only_options(llama, capsys):
    assert main(["compress", str(llama[0]), "--sparsity", "0.5"]) != 0
    assert "--sparsity does not apply to a safetensors checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [(b"\x01", "too short"), (b"\xff" * 8 + b"{}", "does not fit"), (b"\x02\0\0\0\0\0\0\0[]", "not a JSON object")],
)
def test_bad_checkpoint_one_error(tmp_path, content, message):
    (tmp_path / "bad.safetensors").write_bytes(content)
    with pytest.raises(CompressError, match=message):
        compress_checkpoint(tmp_path / "bad.safetensors", tmp_path / "x.dcz", workers=1, progress=False)
    assert not (tmp_path / "x.dcz").exists()


def test_bf16_rounding_is_nearest_even():
    x = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, -2.5, np.inf], dtype=np.float32)
    bits = f32_to_bf16_bits(x)
    back = (bits.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(back, [1.0, 1.0, 1.0 + 2**-6, -2.5, np.inf])


OUTLIERS = Settings(outliers=0.01)


def test_outliers_kept_exactly(llama, tmp_path):
    single, _ = llama
    summary = compress_checkpoint(single, tmp_path / "o.dcz", OUTLIERS, workers=1, progress=False)
    plain = compress_checkpoint(single, tmp_path / "p.dcz", workers=1, progress=False)
    # ~1% of the weights at 4 bytes + ~1 byte of gap each: the file grows by about 0.4 bit per weight
    assert plain["file_bytes"] < summary["file_bytes"] < 1.2 * plain["file_bytes"]
    with formats.open(tmp_path / "o.dcz") as f:
        sides = f.metadata["checkpoint.outliers"]
        assert set(f.names) == {r.name for r in read_checkpoint(single)} | set(sides.values())
        # the size report counts each checkpoint tensor's weights once, side tensors' bytes on top
        totals = f.size_report().totals()
        assert totals["numel"] == sum(r.numel for r in read_checkpoint(single))
        assert {t.side_of for t in f.size_report().tensors if t.side_of} == set(sides)
    decoded = dict(iter_tensors(tmp_path / "o.dcz"))
    assert set(decoded) == {r.name for r in read_checkpoint(single)}  # side tensors are not the checkpoint's
    palettized = dict(iter_tensors(tmp_path / "p.dcz"))
    for ref in read_checkpoint(single):
        x = (load(ref).astype(np.uint32) << 16).view(np.float32)
        if ref.name not in sides:
            continue
        big = np.abs(x) >= np.quantile(np.abs(x), 0.995)  # the largest 0.5%: all inside the kept 1%
        np.testing.assert_array_equal(decoded[ref.name][big], x[big])
        err = lambda y: float(((x - y) ** 2).sum())  # noqa: E731
        assert err(decoded[ref.name]) < 0.8 * err(palettized[ref.name]), ref.name


def test_outliers_same_bytes_for_any_worker_count(llama, tmp_path):
    single, sharded = llama
    compress_checkpoint(single, tmp_path / "a.dcz", OUTLIERS, workers=1, progress=False)
    compress_checkpoint(sharded, tmp_path / "b.dcz", OUTLIERS, workers=2, progress=False)
    assert (tmp_path / "a.dcz").read_bytes() == (tmp_path / "b.dcz").read_bytes()


def test_outliers_exported_merged(llama, tmp_path):
    single, _ = llama
    compress_checkpoint(single, tmp_path / "o.dcz", OUTLIERS, workers=1, progress=False)
    export_safetensors(tmp_path / "o.dcz", tmp_path / "out.safetensors")
    from safetensors import safe_open

    decoded = dict(iter_tensors(tmp_path / "o.dcz", bf16_bits=True))
    with safe_open(str(tmp_path / "out.safetensors"), "np") as f:
        assert sorted(f.keys()) == sorted(decoded)


def test_outliers_per_name_pattern(llama, tmp_path):
    """The first matching pattern sets a tensor's fraction; a tensor at 0 gets no side tensor at all."""
    single, _ = llama
    settings = Settings(outliers=0.01, outliers_for=(("*embed*", 0.0), ("*mlp*", 0.04)))
    compress_checkpoint(single, tmp_path / "o.dcz", settings, workers=1, progress=False)
    with formats.open(tmp_path / "o.dcz") as f:
        sides = f.metadata["checkpoint.outliers"]
        fractions = {name: f.info(side).nnz / np.prod(f.info(name).shape) for name, side in sides.items()}
    assert fractions and not any("embed" in name for name in fractions)
    for name, fraction in fractions.items():
        assert fraction == pytest.approx(0.04 if "mlp" in name else 0.01, rel=0.3), name
    decoded = dict(iter_tensors(tmp_path / "o.dcz"))
    assert set(decoded) == {r.name for r in read_checkpoint(single)}


def test_outlier_name_clash_refused(tmp_path):
    save_file(
        {"w": np.ones((64, 64), np.float32), "w.outliers": np.ones(3, np.float32)}, str(tmp_path / "c.safetensors")
    )
    with pytest.raises(CompressError, match="named like a side tensor"):
        compress_checkpoint(tmp_path / "c.safetensors", tmp_path / "c.dcz", OUTLIERS, workers=1, progress=False)
    assert not (tmp_path / "c.dcz").exists()


@pytest.mark.parametrize(
    "bad",
    [dict(outliers=0.5), dict(outliers=-0.1), dict(iterations=0), dict(outliers_for=(("*", 0.2),))],
)
def test_bad_settings_one_error(llama, tmp_path, bad):
    with pytest.raises(CompressError, match=next(iter(bad)).replace("_", " ")):
        compress_checkpoint(llama[0], tmp_path / "x.dcz", Settings(**bad), workers=1, progress=False)


def test_cli_outliers_and_accurate(llama, tmp_path, capsys):
    single, _ = llama
    assert main(["compress", str(single), "-o", str(tmp_path / "o.dcz"), "--outliers", "0.01", "--workers", "1"]) == 0
    assert main(["compress", str(single), "-o", str(tmp_path / "a.dcz"), "--accurate", "--workers", "1"]) == 0
    with formats.open(tmp_path / "o.dcz") as f:
        assert f.metadata["compress.checkpoint"]["outliers"] == 0.01 and "checkpoint.outliers" in f.metadata
    with formats.open(tmp_path / "a.dcz") as f:
        assert f.metadata["compress.checkpoint"]["bits"] == 5 and f.metadata["compress.checkpoint"]["huffman"]
    assert main(["compress", str(single), "-o", str(tmp_path / "b.dcz"), "--outliers", "0.5"]) != 0
    assert "outliers" in capsys.readouterr().err
    per_name = ["--outliers", "0.02,*embed*=0", "--huffman-labels", "--group-rows", "tensor", "--workers", "1"]
    assert main(["compress", str(single), "-o", str(tmp_path / "n.dcz"), *per_name]) == 0
    with formats.open(tmp_path / "n.dcz") as f:
        chosen = f.metadata["compress.checkpoint"]
        assert chosen["outliers"] == 0.02 and chosen["outliers_for"] == [["*embed*", 0.0]] and chosen["huffman"]
        assert {f.info(name).groups for name in f.names if f.info(name).encoding == "shared"} == {1}
        assert not any("embed" in name for name in f.metadata["checkpoint.outliers"])
    for bad in ("0.01,=0.1", "0.01,*embed*=lots"):
        assert main(["compress", str(single), "-o", str(tmp_path / "x.dcz"), "--outliers", bad]) == 2
        assert "--outliers" in capsys.readouterr().err
    assert main(["compress", str(single), "-o", str(tmp_path / "x.dcz"), "--group-rows", "all"]) == 2
    assert "'all' is not a number of rows or 'tensor'" in capsys.readouterr().err


def test_cli_accurate_refused_for_onnx(tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert main(["compress", str(tmp_path / "m.onnx"), "--accurate"]) == 2
    assert "--accurate is for safetensors checkpoints" in capsys.readouterr().err


def test_same_bytes_for_workers_1_2_3_and_without_compiler(llama, tmp_path, monkeypatch):
    """Tensors split into many row blocks (labelled in parallel by the block pool) give the bytes of
    one worker, and the numpy fallback (DCZ_NATIVE=0) gives them too."""
    from dcz.compressor import palettize

    monkeypatch.setattr(palettize, "BLOCK_ELEMENTS", 1 << 12)
    single, _ = llama
    outputs = []
    for workers in (1, 2, 3):
        outputs.append(tmp_path / f"w{workers}.dcz")
        compress_checkpoint(single, outputs[-1], OUTLIERS, workers=workers, progress=False)
    monkeypatch.setenv("DCZ_NATIVE", "0")
    outputs.append(tmp_path / "numpy.dcz")
    compress_checkpoint(single, outputs[-1], OUTLIERS, workers=2, progress=False)
    assert len({p.read_bytes() for p in outputs}) == 1


@pytest.mark.parametrize("settings", [Settings(), Settings(bits=3, bits_for=(("*mlp*", 5),), group_rows=7)])
def test_body_written_in_place_gives_the_copied_bytes(llama, tmp_path, monkeypatch, settings):
    """Fixed-width settings: the writer is told where the body starts and never copies it; the bytes are
    those of the copying path (no prediction)."""
    from dcz.compressor import checkpoint
    from dcz.formats import streaming

    single, _ = llama
    rng = np.random.default_rng(1)
    mixed = {
        "f32": rng.standard_normal((64, 100)).astype(np.float32),
        "f16": rng.standard_normal((70, 90)).astype(np.float16),
        "small16": rng.standard_normal((3, 5)).astype(np.float16),
        "ids": np.arange(10, dtype=np.int64),
        "i16": np.arange(12, dtype=np.int16),
        "flags": np.array([True, False]),
    }
    save_file(mixed, str(tmp_path / "mixed.safetensors"))
    for source in (single, tmp_path / "mixed.safetensors"):
        copied = tmp_path / "copied.dcz"
        with monkeypatch.context() as m:
            m.setattr(checkpoint, "_planned", lambda refs, settings: None)
            compress_checkpoint(source, copied, settings, workers=2, progress=False)

        def no_copy(*args):
            raise AssertionError("the body was copied")

        monkeypatch.setattr(streaming, "_copy_file", no_copy)
        compress_checkpoint(source, tmp_path / "in_place.dcz", settings, workers=2, progress=False)
        monkeypatch.undo()
        assert (tmp_path / "in_place.dcz").read_bytes() == copied.read_bytes()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["copied.dcz", "in_place.dcz", "mixed.safetensors"]
