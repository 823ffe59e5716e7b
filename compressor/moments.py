"""Input second moments E[x x^T] of a torch module's Linear layers: the `--calib MOMENTS.npz` of a checkpoint.

`dcz compress model.safetensors --calib MOMENTS.npz` chooses labels by error feedback and refits the
codebooks on each Linear weight's output (compressor/gptq.py, compressor/refit.py); what it needs
from the data is, for each weight W (out, in), the second moment H = E[x x^T] (in, in) of the inputs
x the layer sees. This runs the user's module (the dense model, e.g. a transformers model built from
the same checkpoint) on calibration batches with a forward hook on every nn.Linear and sums x x^T in
float64 over the real tokens (`token_mask`: padding would otherwise pull H toward the pad token's
activations), then names each H after the checkpoint's weight tensor.

    moments = linear_input_moments(model, [(ids, mask) for ids, mask in batches], token_mask=lambda b: b[1] > 0)
    save_moments("moments.npz", moments)     # then: dcz compress model.safetensors --calib moments.npz

No labels are needed, and none of the calibration text should be text the result is judged on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import CompressError


def linear_input_moments(module, batches, names: dict[str, str] | None = None, token_mask=None) -> dict:
    """{checkpoint weight name: float32 (in, in)} for every nn.Linear of `module` that ran.

    batches: an iterable; each batch is passed as module(*batch) if it is a tuple or list, else module(batch).
    names: checkpoint tensor name -> the module's parameter name (as for tune_checkpoint), when they differ;
    Linear layers without an entry are named by their parameter name ("<module path>.weight").
    token_mask(batch) -> a bool tensor over the leading dims of each Linear's input (e.g. the attention mask
    for (batch, tokens, features) inputs): only those rows count. None: every row counts."""
    import torch

    to_checkpoint = {param: name for name, param in (names or {}).items()}
    linears = {path: layer for path, layer in module.named_modules() if isinstance(layer, torch.nn.Linear)}
    if not linears:
        raise CompressError("linear_input_moments: the module has no torch.nn.Linear layer")
    sums: dict[str, list] = {}
    current: dict = {}

    def hook(path):
        def add(layer, inputs, output):
            x = inputs[0].detach()
            rows = x.reshape(-1, x.shape[-1]) if current["mask"] is None else _masked(x, current["mask"], path)
            total = sums.setdefault(path, [0.0, 0])
            total[0] = total[0] + rows.double().T @ rows.double()
            total[1] += rows.shape[0]

        return add

    handles = [layer.register_forward_hook(hook(path)) for path, layer in linears.items()]
    try:
        count = _run(module, batches, token_mask, current)
    finally:
        for handle in handles:
            handle.remove()
    if not count:
        raise CompressError("linear_input_moments: no calibration batch was given")
    moments = {}
    for path, (total, n) in sums.items():
        if not n:
            continue
        moment = (total / n).float().numpy()
        if not np.isfinite(moment).all():
            raise CompressError(f"linear_input_moments: layer {path!r} saw NaN or infinite inputs")
        weight = f"{path}.weight" if path else "weight"
        moments[to_checkpoint.get(weight, weight)] = moment
    return moments


def _run(module, batches, token_mask, current: dict) -> int:
    import torch

    count = 0
    with torch.no_grad():
        for index, batch in enumerate(batches):
            current["mask"] = None if token_mask is None else torch.as_tensor(token_mask(batch)).bool()
            args = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
            try:
                module(*args)
            except CompressError:
                raise
            except Exception as error:  # the user's module: any error is about this batch
                first = str(error).splitlines()[0] if str(error) else ""
                raise CompressError(
                    f"linear_input_moments: calibration batch {index}: the module raised {type(error).__name__}: {first}"
                ) from None
            count += 1
    return count


def _masked(x, mask, path: str):
    lead = tuple(x.shape[:-1])
    if tuple(mask.shape) != lead:
        raise CompressError(
            f"linear_input_moments: layer {path!r}: token_mask is {tuple(mask.shape)}, its input's leading dims {lead}"
        )
    return x[mask]


def save_moments(path, moments: dict) -> Path:
    """Write {tensor name: (in, in) array} as the .npz `dcz compress --calib` reads (no pickled objects)."""
    if not moments:
        raise CompressError("save_moments: no moment to save")
    arrays = {name: np.ascontiguousarray(m, dtype=np.float32) for name, m in moments.items()}
    for name, array in arrays.items():
        if array.ndim != 2 or array.shape[0] != array.shape[1]:
            raise CompressError(f"save_moments: {name!r} is {array.shape}; a square (in, in) array is needed")
    np.savez(path, **arrays)
    return Path(path)
