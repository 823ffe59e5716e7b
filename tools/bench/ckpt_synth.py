"""Random LLM-shaped safetensors checkpoints (Llama layout), written tensor by tensor.

Shapes follow a Llama decoder: embedding and LM head (vocab x hidden), per layer q/k/v/o
(hidden x hidden), gate/up (inter x hidden), down (hidden x inter) and two RMSNorm vectors.
Values are Gaussian with std 0.02 plus a few large outliers, generated per tensor from a seed
(the same checkpoint every time) and written straight to disk, so memory holds one tensor.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np

from dcz.runtime.safetensors_out import f32_to_bf16_bits

LLAMA_7B = dict(layers=32, hidden=4096, inter=11008, vocab=32000)


def llama_shapes(layers: int, hidden: int, inter: int, vocab: int) -> list[tuple[str, tuple]]:
    shapes = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes += [(p + f"self_attn.{n}_proj.weight", (hidden, hidden)) for n in "qkvo"]
        shapes += [(p + "mlp.gate_proj.weight", (inter, hidden)), (p + "mlp.up_proj.weight", (inter, hidden))]
        shapes += [(p + "mlp.down_proj.weight", (hidden, inter))]
        shapes += [(p + "input_layernorm.weight", (hidden,)), (p + "post_attention_layernorm.weight", (hidden,))]
    return shapes + [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]


def parameters(shapes) -> int:
    return sum(int(np.prod(s)) for _, s in shapes)


def make_tensor(index: int, shape: tuple) -> np.ndarray:
    """bf16 bit patterns (uint16) of one tensor, from its own seed; rows made in blocks."""
    rng = np.random.default_rng(index)
    if len(shape) == 1:
        return f32_to_bf16_bits(1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32))
    out = np.empty(shape, dtype=np.uint16)
    step = max(1, (1 << 22) // shape[1])
    for r in range(0, shape[0], step):
        block = rng.standard_normal((min(step, shape[0] - r), shape[1]), dtype=np.float32) * np.float32(0.02)
        block.reshape(-1)[::997] *= 8  # outliers, as trained LLM weights have
        out[r : r + step] = f32_to_bf16_bits(block)
    return out


def write_checkpoint(folder, shards: int = 1, **config) -> Path:
    """Write model.safetensors (or model-0000N-of-0000M + index) into folder; returns the path to give dcz."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shapes = llama_shapes(**config)
    per = -(-len(shapes) // shards)
    groups = [list(enumerate(shapes))[i : i + per] for i in range(0, len(shapes), per)]
    names = (
        ["model.safetensors"]
        if shards == 1
        else [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(len(groups))]
    )
    for name, group in zip(names, groups):
        _write_shard(folder / name, group)
    if shards == 1:
        return folder / names[0]
    weight_map = {n: f for f, g in zip(names, groups) for _, (n, _) in g}
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def _write_shard(path: Path, group) -> None:
    doc, pos = {}, 0
    for _, (name, shape) in group:
        nbytes = 2 * int(np.prod(shape))
        doc[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [pos, pos + nbytes]}
        pos += nbytes
    head = json.dumps(doc).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for index, (_, shape) in group:
            f.write(make_tensor(index, shape).tobytes())


def reuse_or_write(folder, **config) -> tuple[Path, bool]:
    """(path to give dcz, generated now?): the checkpoint kept in `folder` when it holds exactly these
    shapes (one bf16 file), else a new one written to `folder` (via a `.partial` folder renamed at the
    end, so an interrupted run leaves nothing that looks reusable). Never overwrites other files."""
    folder = Path(folder)
    path = folder / "model.safetensors"
    if folder.exists():
        if not _matches(path, llama_shapes(**config)):
            raise SystemExit(f"{folder} exists but does not hold this checkpoint {config}: remove it or pick another")
        return path, False
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_checkpoint(partial, **config)
    os.replace(partial, folder)
    return path, True


def _matches(path: Path, shapes) -> bool:
    from dcz.compressor.checkpoint_read import read_header
    from dcz.compressor.errors import CompressError

    try:
        refs = read_header(path)
    except (CompressError, OSError):
        return False
    return [(r.name, r.shape, r.dtype) for r in refs] == [(n, tuple(s), "bfloat16") for n, s in shapes]
