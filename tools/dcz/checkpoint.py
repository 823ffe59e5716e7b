"""A weights-only .dcz as a state dict, loaded lazily: one tensor decoded per step.

    for name, tensor in dcz.checkpoint.state_dict_items("model.dcz", framework="torch"):
        model.get_parameter(name).data.copy_(tensor)

framework "numpy" gives numpy arrays (bfloat16 tensors as float32: numpy has no bf16), "torch"
gives torch tensors in the checkpoint's own dtypes (torch is imported only then). `max_dense_bytes`
caps each decoded tensor (formats.open's budget, 2 GiB by default): raise it for a trusted checkpoint.
"""

from __future__ import annotations

from dcz.formats.layout import DEFAULT_MAX_DENSE_BYTES
from dcz.runtime.safetensors_out import iter_tensors

FRAMEWORKS = ("numpy", "torch")


def state_dict_items(path, framework: str = "numpy", *, max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES):
    """(name, tensor) pairs, decoded one at a time as the caller iterates."""
    if framework not in FRAMEWORKS:
        from dcz.runtime.errors import DczRuntimeError

        raise DczRuntimeError(f"framework must be one of {', '.join(FRAMEWORKS)}, got {framework!r}")
    if framework == "numpy":
        yield from iter_tensors(path, max_dense_bytes=max_dense_bytes)
        return
    import torch

    from dcz.formats import open as open_dcz

    with open_dcz(path, max_dense_bytes=max_dense_bytes) as f:
        dtypes = dict(f.metadata.get("source.dtypes") or {})
    for name, arr in iter_tensors(path, bf16_bits=True, max_dense_bytes=max_dense_bytes):
        if dtypes.get(name) == "bfloat16":
            yield name, torch.from_numpy(arr.view("int16")).view(torch.bfloat16)
        else:
            yield name, torch.from_numpy(arr)


def load_state_dict(path, framework: str = "numpy", *, max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES) -> dict:
    """Every tensor at once (for models that fit in memory)."""
    return dict(state_dict_items(path, framework, max_dense_bytes=max_dense_bytes))
