"""Trained quantization of a palettized checkpoint (Deep Compression section 3.3), by distillation.

`dcz compress` fixes each palettized tensor's labels and codebooks one tensor at a time; the errors
of all tensors then add up in the model's output. Here the labels stay fixed and every group's
centroids become trainable: the checkpoint's tensors are loaded into the user's torch module, each
palettized weight is parametrized as `codebook[group, label]` (outliers of the side tensor kept
exactly), so autograd's backward of the gather sums the gradients of a cluster's weights into its
centroid, as compressor/share.py does for whole models; the raw floating tensors (norms, biases:
kept lossless, so training them costs no byte) train too. The user's `loss(module, batch)` says what
to match: typically the dense model's outputs or hidden states on calibration inputs (distillation,
no labels needed). The result is written as a new .dcz with the same labels, group layout, side
tensors and metadata; only codebook and raw values change, so the size stays the same to a few bytes.

Deterministic: batches in the order given, Adam, no dropout of its own; the same inputs, seed and
torch thread count give the same bytes (torch's CPU kernels sum in a fixed order per thread count).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from dcz.formats import Raw, Shared
from dcz.formats import open as open_dcz
from dcz.formats.entry import view_2d
from dcz.formats.streaming import StreamWriter, encode, encode_shared_fixed, encode_sparse_flat

from .errors import CompressError

FLOATING = ("float16", "float32", "float64")
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TuneSettings:
    epochs: int = 6
    lr: float = 1e-4  # Adam step; centroids move by ~lr per step
    raw: bool = True  # also train the raw floating tensors (norms, biases: stored lossless)
    seed: int = 0
    schedule: str = "constant"  # or "cosine": epoch e steps at lr * (1 + cos(pi * e / epochs)) / 2

    def check(self) -> None:
        if not 1 <= self.epochs <= 10_000:
            raise CompressError(f"tune epochs must be in 1..10000, got {self.epochs}")
        if not 0 < self.lr < 1:
            raise CompressError(f"tune lr must be in (0, 1), got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise CompressError(f"tune schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    def lr_at(self, epoch: int) -> float:
        if self.schedule == "cosine":
            return self.lr * (1 + math.cos(math.pi * epoch / self.epochs)) / 2
        return self.lr


def tune_checkpoint(path, out, module, loss, batches, names=None, settings: TuneSettings | None = None) -> dict:
    """Fine-tune the codebooks (and raw floating tensors) of the .dcz at `path` inside `module`; write `out`.

    module: a torch nn.Module holding the checkpoint's tensors as parameters (its other parameters stay
    frozen). names: checkpoint tensor name -> module parameter name (default: the checkpoint names that
    are parameters of the module). loss(module, batch) -> scalar torch tensor to minimise. batches: a
    sequence of batches, or a callable epoch -> iterable of batches (e.g. fresh augmentations each epoch).
    Returns a summary: tensors tuned, loss per epoch, bytes, seconds."""
    import torch

    settings = settings or TuneSettings()
    settings.check()
    start = time.perf_counter()
    with open_dcz(path) as f:
        metadata = {k: v for k, v in f.metadata.items() if not k.startswith("dcz.")}  # dcz.*: the writer's own
        sides = dict(metadata.get("checkpoint.outliers") or {})
        wanted = _names(f.names, sides, module, names)
        torch.manual_seed(settings.seed)
        palettes, raws = _attach(f, module, wanted, sides, settings)
        params = [p.book for p in palettes.values()] + list(raws.values())
        if not params:
            raise CompressError(f"{path}: no palettized or raw floating tensor of the checkpoint is in the module")
        losses = _train(module, loss, batches, params, settings)
        metadata["compress.checkpoint.tuned"] = dict(asdict(settings), tensors=sorted(palettes) + sorted(raws))
        huffman = bool((metadata.get("compress.checkpoint") or {}).get("huffman"))
        with StreamWriter(out, graph=f.graph, graph_format=f.graph_format, metadata=metadata) as writer:
            for name in f.names:
                writer.add_encoded(*_encoded(f, name, palettes, raws, huffman))
    return dict(
        tensors=len(palettes) + len(raws),
        losses=losses,
        file_bytes=_size(out),
        seconds=time.perf_counter() - start,
    )


def _names(stored, sides: dict, module, names) -> dict:
    """checkpoint name -> module parameter name, checked both ways."""
    parameters = dict(module.named_parameters())
    side_names = set(sides.values())
    if names is None:
        return {n: n for n in stored if n in parameters and n not in side_names}
    for name, param in names.items():
        if name not in stored or name in side_names:
            raise CompressError(f"tune names: {name!r} is not a tensor of the checkpoint")
        if param not in parameters:
            raise CompressError(f"tune names: {param!r} (for {name!r}) is not a parameter of the module")
    return dict(names)


def _attach(f, module, wanted: dict, sides: dict, settings: TuneSettings):
    """Load the checkpoint into the module: palettized tensors parametrized by trainable codebooks,
    raw floating ones trainable (settings.raw), everything else frozen."""
    import torch
    from torch.nn.utils import parametrize

    for param in module.parameters():
        param.requires_grad_(False)
    palettes, raws = {}, {}
    for name, target in wanted.items():
        info = f.info(name)
        owner, attr = _owner(module, target)
        param = getattr(owner, attr)
        if tuple(param.shape) != tuple(info.shape):
            raise CompressError(
                f"tune: {name!r} is {tuple(info.shape)} in the checkpoint, {tuple(param.shape)} in the module"
            )
        dense, kept = _with_outliers(f, name, sides)
        with torch.no_grad():
            param.copy_(torch.from_numpy(dense).to(param.dtype))
        if info.encoding == "shared":
            palette = Palette(*f.palette(name), dense, kept)
            parametrize.register_parametrization(owner, attr, palette, unsafe=True)
            palettes[name] = palette
        elif info.encoding == "raw" and info.dtype in FLOATING and settings.raw:
            param.requires_grad_(True)
            raws[name] = param
    return palettes, raws


def _owner(module, target: str):
    path, _, attr = target.rpartition(".")
    return (module.get_submodule(path) if path else module), attr


def _with_outliers(f, name: str, sides: dict):
    """(the tensor as the checkpoint readers give it: the side tensor's outliers written over it, bool mask
    of those outliers or None)."""
    dense = f.tensor(name)
    side = sides.get(name)
    if side is None or side not in f:
        return dense, None
    indptr, indices, values = f.csr(side)
    rows = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    kept = np.zeros((indptr.size - 1, dense.size // max(indptr.size - 1, 1)), dtype=bool)
    kept[rows, indices] = True
    dense.reshape(kept.shape)[rows, indices] = values
    return dense, kept.reshape(dense.shape)


def _palette_module():
    from torch import nn

    class Palette(nn.Module):
        """Parametrization `codebook[group, label]`, outliers (`keep`) fixed at their stored values."""

        def __init__(self, labels, book, group_rows: int, dense, kept):
            import torch

            super().__init__()
            self.book = nn.Parameter(torch.from_numpy(np.ascontiguousarray(book, dtype=np.float32)))
            self.labels, self.group_rows = labels, group_rows
            index = (np.arange(labels.shape[0]) // group_rows)[:, None] * book.shape[1] + labels.astype(np.int64)
            self.register_buffer("index", torch.from_numpy(index).reshape(dense.shape))
            self.register_buffer("keep", None if kept is None else torch.from_numpy(kept))
            self.register_buffer("kept", None if kept is None else torch.from_numpy(dense.astype(np.float32)))

        def forward(self, _original):
            import torch

            weight = self.book.reshape(-1)[self.index]
            return weight if self.keep is None else torch.where(self.keep, self.kept, weight)

    return Palette


def Palette(labels, book, group_rows, dense, kept):  # noqa: N802 (a class made on first use: torch imported lazily)
    return _palette_module()(labels, book, group_rows, dense, kept)


def _train(module, loss, batches, params, settings: TuneSettings) -> list[float]:
    import torch

    optimizer = torch.optim.Adam(params, lr=settings.lr)
    was_training = module.training
    module.train()
    losses = []
    try:
        for epoch in range(settings.epochs):
            for group in optimizer.param_groups:
                group["lr"] = settings.lr_at(epoch)
            total, count = 0.0, 0
            for batch in batches(epoch) if callable(batches) else batches:
                value = loss(module, batch)
                if not torch.isfinite(value):
                    raise CompressError(f"tune: the loss is {float(value)} at epoch {epoch}, batch {count}")
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
                total, count = total + float(value.detach()), count + 1
            if not count:
                raise CompressError("tune: no batch to train on")
            losses.append(total / count)
    finally:
        module.train(was_training)
    return losses


def _encoded(f, name: str, palettes: dict, raws: dict, huffman: bool):
    """(entry, parts) of one tensor of the tuned file: new codebook or raw values, the rest as stored."""
    info = f.info(name)
    if name in palettes:
        palette = palettes[name]
        book = palette.book.detach().numpy().astype(np.float32)
        return _shared(info, palette.labels, book, palette.group_rows, huffman)
    if info.encoding == "raw":
        values = raws[name].detach().numpy() if name in raws else f.tensor(name)
        return encode(Raw(name, np.ascontiguousarray(values, dtype=info.dtype).reshape(info.shape)), huffman=True)
    if info.encoding == "shared":
        return _shared(info, *f.palette(name), huffman)
    if info.encoding == "sparse":
        indptr, indices, values = f.csr(name)
        _, cols = view_2d(tuple(info.shape))
        flat = np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr)) * cols + indices
        return encode_sparse_flat(name, info.shape, flat, values, info.gap_bits)
    raise CompressError(f"tune: tensor {name!r} is {info.encoding}; only checkpoints from dcz compress are supported")


def _shared(info, labels, book, group_rows: int, huffman: bool):
    """A palettized tensor encoded as dcz compress encodes it (fixed-width or Huffman-coded labels)."""
    if huffman:
        return encode(Shared(info.name, labels.reshape(info.shape), book, info.label_bits, group_rows), huffman=True)
    return encode_shared_fixed(info.name, info.shape, labels, book, info.label_bits, group_rows)


def _size(path) -> int:
    import os

    return os.stat(path).st_size
