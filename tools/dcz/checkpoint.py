"""A weights-only .dcz as a state dict, loaded lazily: one tensor decoded per step.

    for name, tensor in dcz.checkpoint.state_dict_items("model.dcz", framework="torch"):
        model.get_parameter(name).data.copy_(tensor)

framework "numpy" gives numpy arrays (bfloat16 tensors as float32: numpy has no bf16), "torch"
gives torch tensors in the checkpoint's own dtypes (torch is imported only then).
"""

from __future__ import annotations

from dcz.runtime.safetensors_out import iter_tensors

FRAMEWORKS = ("numpy", "torch")


def state_dict_items(path, framework: str = "numpy"):
    """(name, tensor) pairs, decoded one at a time as the caller iterates."""
    if framework not in FRAMEWORKS:
        from dcz.runtime.errors import DczRuntimeError

        raise DczRuntimeError(f"framework must be one of {', '.join(FRAMEWORKS)}, got {framework!r}")
    if framework == "numpy":
        yield from iter_tensors(path)
        return
    import torch

    from dcz.formats import open as open_dcz

    with open_dcz(path) as f:
        dtypes = dict(f.metadata.get("source.dtypes") or {})
    for name, arr in iter_tensors(path, bf16_bits=True):
        if dtypes.get(name) == "bfloat16":
            yield name, torch.from_numpy(arr.view("int16")).view(torch.bfloat16)
        else:
            yield name, torch.from_numpy(arr)


def load_state_dict(path, framework: str = "numpy") -> dict:
    """Every tensor at once (for models that fit in memory)."""
    return dict(state_dict_items(path, framework))
