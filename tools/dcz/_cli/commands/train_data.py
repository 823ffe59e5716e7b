"""`dcz compress --train DATA.npz`: the user's training data for fine-tuning, read without pickle."""

from __future__ import annotations

from dcz._cli.commands._common import existing_file
from dcz._cli.errors import CliError, require

HINT = "save it with numpy.savez(path, x=inputs, y=labels): x float inputs shaped like the model's input, y int labels"


def load_arrays(path: str):
    """(x float32, y int64) from an .npz holding arrays x and y of the same length."""
    np = require("numpy", "--train")
    path = existing_file(path, "--train file")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("x", "y") if key not in data.files]
            if missing:
                raise CliError(
                    f"{path} has no array {missing[0]!r} (it holds {', '.join(data.files) or 'nothing'})", HINT
                )
            x, y = data["x"], data["y"]
    except (ValueError, OSError) as exc:  # not an npz, or an object array (pickle refused)
        raise CliError(f"cannot read {path} as an .npz of arrays: {exc}", HINT) from exc
    if x.dtype.kind not in "fiu" or y.dtype.kind not in "iu":
        raise CliError(f"{path}: x must be numbers and y integer labels, got {x.dtype} and {y.dtype}", HINT)
    if x.ndim < 1 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise CliError(
            f"{path}: x {x.shape} and y {y.shape} must hold the same number (> 0) of samples, y one label each", HINT
        )
    return x.astype(np.float32), y.astype(np.int64)


def loader(path: str, input_shape, batch_size: int, seed: int):
    """A shuffled (seeded) DataLoader of (x, y) batches; x must match the example input's shape."""
    torch = require("torch", "--train")
    x, y = load_arrays(path)
    if tuple(x.shape[1:]) != tuple(input_shape[1:]):
        raise CliError(
            f"{path}: samples are shaped {tuple(x.shape[1:])}, the model's input is {tuple(input_shape[1:])}",
            "reshape x to (N, ...) matching --input-shape",
        )
    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    return torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
