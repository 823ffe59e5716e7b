"""Weight sharing with trainable centroids (Han, Mao & Dally 2016, section 3.3).

`SharedWeight` is a parametrization computing `weight = centroids[labels] * mask`. The centroids are
an nn.Parameter, so autograd's backward of the gather sums the gradients of all weights of a
cluster into that cluster's centroid (the paper's trained quantization); the labels and mask are
fixed buffers, so pruned positions stay zero and weights never change cluster.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from dcz.compressor import linear, safe
from dcz.compressor.config import LayerPlan
from dcz.compressor.kmeans import cluster_weights
from dcz.compressor.prune import current_mask, unmasked_weight


class SharedWeight(nn.Module):
    """Parametrization `centroids[labels] * mask` (per-group codebooks when centroids is 2-D).

    Labels are kept as uint8 (k <= 256): 1 byte per weight instead of int64's 8. Torch indexes
    with int64 only, so forward widens them transiently: whole-tensor when autograd needs the
    gather (fine-tuning), in row chunks otherwise.
    """

    def __init__(
        self, centroids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None, group_rows: int | None = None
    ) -> None:
        super().__init__()
        self.centroids = nn.Parameter(centroids.to(torch.float32))
        narrow = torch.uint8 if centroids.shape[-1] <= 256 else torch.long
        self.register_buffer("labels", labels.to(narrow))
        self.register_buffer("mask", None if mask is None else mask.to(torch.bool))
        self.group_rows = group_rows
        if self.centroids.dim() == 2:
            rows = labels.shape[0]
            group = torch.arange(rows) // (group_rows or rows)
            # (rows, 1, ...): broadcasts against the labels when indexing, no per-weight copy
            self.register_buffer("row_group", group.reshape((rows,) + (1,) * (labels.dim() - 1)))
        else:
            self.row_group = None

    def forward(self, original: torch.Tensor) -> torch.Tensor:  # the original is superseded
        if torch.is_grad_enabled() and self.centroids.requires_grad:
            labels = self.labels.long()
            weight = self.centroids[labels] if self.row_group is None else self.centroids[self.row_group, labels]
            return weight if self.mask is None else weight * self.mask
        with torch.no_grad():
            weight = self._gather_in_chunks()
            return weight if self.mask is None else weight.mul_(self.mask)

    def _gather_in_chunks(self, chunk_elements: int = 1 << 22) -> torch.Tensor:
        labels = self.labels
        out = torch.empty(labels.shape, dtype=self.centroids.dtype, device=labels.device)
        if labels.numel() == 0:
            return out
        rows = labels.reshape(labels.shape[0], -1)
        out_rows = out.view(rows.shape)
        flat_book = self.centroids.detach().reshape(-1)
        k = self.centroids.shape[-1]
        step = max(1, chunk_elements // max(1, rows.shape[1]))
        for start in range(0, rows.shape[0], step):
            index = rows[start : start + step].long()
            if self.row_group is not None:
                index += self.row_group.reshape(-1)[start : start + step, None] * k
            out_rows[start : start + step] = flat_book[index]
        return out


def shared_weight(module: nn.Module) -> SharedWeight | None:
    """The SharedWeight parametrization of module.weight, if any."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    return next((p for p in module.parametrizations["weight"] if isinstance(p, SharedWeight)), None)


def share_layer(module: nn.Module, plan: LayerPlan, seed: int = 0) -> SharedWeight | str:
    """Cluster module.weight's surviving values and replace it by a SharedWeight parametrization.

    With `plan.auto` (no bits set) the bits and row groups come from compressor.safe; when no
    codebook meets its bound the weight is left as it is and the reason is returned instead.

    The weight is evaluated once and read (not copied) for clustering. The original that torch keeps
    becomes a frozen stride-0 zero tensor of the same shape (the labels and codebook supersede its
    values); registering skips torch's check evaluation (SharedWeight keeps shape and dtype).
    """
    # Under a PruneMask alone, read the original rather than evaluating original * mask (a fresh
    # full-size tensor): clustering reads only the kept entries, where the two are equal.
    weight = unmasked_weight(module)
    mask = current_mask(module)
    mask = None if mask is None else mask.clone()
    dense, keep = weight.numpy(), None if mask is None else mask.numpy()
    scheme = linear.scheme_of(plan)
    linear_info = None
    if scheme is not None:  # a linear grid (compressor.linear) instead of k-means
        result = linear.quantize(dense, keep, scheme)
        book, labels, group_rows, bits = result.codebook, result.labels, result.group_rows, scheme.bits
        linear_info = result.metadata(scheme)
    elif plan.auto:  # no bits set: the cheapest codebook within the safe weight-error bound
        choice = safe.choose(dense, keep, seed=seed, init=plan.init)
        if choice.codebook is None:
            return choice.reason
        book, labels, group_rows, bits = choice.codebook, choice.labels, choice.group_rows, choice.bits
    else:
        book, labels = cluster_weights(
            dense, keep, plan.bits, init=plan.init, seed=seed, backend=plan.kmeans, group_rows=plan.group_rows
        )
        group_rows, bits = plan.group_rows, plan.bits
    error_db = safe.sqnr_db(dense, safe.reconstruct(book, labels, group_rows, keep))
    if parametrize.is_parametrized(module, "weight"):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)  # no evaluation
    with torch.no_grad():
        # SharedWeight ignores the original: keep its shape, not its values (a stride-0 zero tensor,
        # 4 bytes, instead of a dense float32 copy that nothing reads)
        module.weight.set_(torch.zeros((), dtype=weight.dtype).expand(weight.shape))
    del weight
    shared = SharedWeight(torch.from_numpy(book), torch.from_numpy(labels), mask, group_rows)
    shared.bits, shared.sqnr_db, shared.linear = bits, error_db, linear_info
    parametrize.register_parametrization(module, "weight", shared, unsafe=True)
    # The original tensor no longer affects the output: freeze it so optimizers leave it alone.
    module.parametrizations["weight"].original.requires_grad_(False)
    if linear_info is not None:  # the grid is fixed by its scale: training the levels would leave it
        shared.centroids.requires_grad_(False)
    return shared


def as_numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.detach().cpu().numpy()
