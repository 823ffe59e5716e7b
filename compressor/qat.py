"""Quantization-aware training: fake-quantized weights and activations, straight-through gradients.

Weights: a torch parametrization (`FakeQuantWeight`) rounds each forward's weight onto the linear grid
compressor.linear will store (same scale rule: max |w| / half the levels, per tensor or per output
channel), so after training the export's rounding is the one the network learned to live with. The
gradient passes through the rounding unchanged (straight-through estimator): w + (q(w) - w).detach().

Activations: an observer (`ActivationObserver`) per quantized input and output of each Conv / Linear
keeps a moving-average min / max while training (frozen in eval mode) and fake-quantizes the tensor to
int8 affine levels with torch's own fake_quantize_per_tensor_affine (straight-through inside the range,
zero gradient outside). Max pooling, flattening and ReLU keep values on such a grid, so this covers
the tensors ONNX Runtime's int8 kernels quantize. At export (Compressed.save(calib=...)), ORT's
calibrator chooses which tensors of the exported graph to quantize and measures them; the observers'
grids then replace the calibrated ones at the inputs and outputs of each Conv / Gemm / MatMul whose
weight belongs to an observed module (`observed_scales`), so the file runs the grids training saw.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from dcz.compressor.linear import LinearScheme

_QUANTIZED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class FakeQuantWeight(nn.Module):
    """Parametrization: the weight rounded onto its linear grid, gradients straight through."""

    def __init__(self, scheme: LinearScheme) -> None:
        super().__init__()
        self.scheme = scheme

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (fake_quantize_weight(weight.detach(), self.scheme) - weight).detach()


def fake_quantize_weight(weight: torch.Tensor, scheme: LinearScheme) -> torch.Tensor:
    """The weight's values on compressor.linear's grid (scale and zero point from the current weight)."""
    rows = weight.reshape(weight.shape[0], -1) if weight.dim() > 1 else weight.reshape(1, -1)
    if scheme.per_channel:
        low, high = rows.amin(dim=1, keepdim=True), rows.amax(dim=1, keepdim=True)
    else:
        low, high = rows.min().reshape(1, 1), rows.max().reshape(1, 1)
    low, high = low.clamp(max=0.0).double(), high.clamp(min=0.0).double()
    if scheme.symmetric:
        half = (scheme.qmax - scheme.qmin) // 2
        scale = torch.maximum(low.abs(), high) / half
        zero = torch.full_like(scale, 0 if scheme.signed else (scheme.qmin + scheme.qmax + 1) // 2)
    else:
        scale = (high - low) / (scheme.qmax - scheme.qmin)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = torch.clamp(torch.round(scheme.qmin - low / safe), scheme.qmin, scheme.qmax)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).float()
    q = torch.clamp(torch.round(rows / scale) + zero.float(), scheme.qmin, scheme.qmax)
    return ((q - zero.float()) * scale).reshape(weight.shape)


class ActivationObserver(nn.Module):
    """Moving-average min / max of a tensor (updated in training only) and int8 affine fake quantization."""

    def __init__(self, bits: int = 8, momentum: float = 0.01) -> None:
        super().__init__()
        self.qmin, self.qmax, self.momentum = -(1 << (bits - 1)), (1 << (bits - 1)) - 1, momentum
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        low, high = x.min().clamp(max=0.0), x.max().clamp(min=0.0)
        if not bool(self.seen):
            self.low.copy_(low)
            self.high.copy_(high)
            self.seen.fill_(True)
        else:
            self.low.lerp_(low, self.momentum)
            self.high.lerp_(high, self.momentum)

    def scale_and_zero(self) -> tuple[float, int]:
        span = float(self.high - self.low)
        scale = span / (self.qmax - self.qmin) if span > 0 else 1.0
        zero = int(round(self.qmin - float(self.low) / scale))
        return scale, min(max(zero, self.qmin), self.qmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.observe(x)
        if not bool(self.seen):
            return x
        scale, zero = self.scale_and_zero()
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, self.qmin, self.qmax)


@dataclass
class QatHandle:
    """What `prepare` added to a model; `finish` takes it all out again."""

    model: nn.Module
    weights: list[nn.Module] = field(default_factory=list)
    observers: nn.ModuleDict = field(default_factory=nn.ModuleDict)
    hooks: list = field(default_factory=list)
    by_module: dict = field(default_factory=dict)  # module name -> (input observer, output observer)

    def ranges(self) -> dict[str, dict[str, tuple[float, int]]]:
        """{module name: {"in": (scale, zero point), "out": ...}}: the int8 grids training ended with."""
        out = {}
        for name, pair in self.by_module.items():
            seen = {k: o.scale_and_zero() for k, o in zip(("in", "out"), pair) if bool(o.seen)}
            if seen:
                out[name] = seen
        return out

    def finish(self) -> None:
        """Remove the fake quantization: the modules keep their trained float weights (pruning masks stay)."""
        for hook in self.hooks:
            hook.remove()
        for module in self.weights:
            fakes = [i for i, p in enumerate(module.parametrizations["weight"]) if isinstance(p, FakeQuantWeight)]
            kept = [p for p in module.parametrizations["weight"] if not isinstance(p, FakeQuantWeight)]
            if fakes:
                original = module.parametrizations["weight"].original
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
                module.weight = original
                for p in kept:
                    parametrize.register_parametrization(module, "weight", p, unsafe=True)
        self.hooks, self.weights = [], []


def prepare(
    model: nn.Module, schemes: dict[str, LinearScheme], act_bits: int | None = 8, modules: Iterable[str] | None = None
) -> QatHandle:
    """Fake-quantize the weights named in `schemes` (param name -> scheme) and, with act_bits, the inputs
    and outputs of every Conv / Linear among `modules` (default: those owning a weight in `schemes`)."""
    handle = QatHandle(model)
    by_name = dict(model.named_modules())
    for name, scheme in schemes.items():
        module = by_name[name.removesuffix(".weight")]
        parametrize.register_parametrization(module, "weight", FakeQuantWeight(scheme), unsafe=True)
        handle.weights.append(module)
    if act_bits is None:
        return handle
    names = list(modules) if modules is not None else [n.removesuffix(".weight") for n in schemes]
    for name in names:
        module = by_name[name]
        if not isinstance(module, _QUANTIZED):
            continue
        key = name.replace(".", "_") or "root"
        into, out = ActivationObserver(act_bits), ActivationObserver(act_bits)
        handle.observers[key + "__in"], handle.observers[key + "__out"] = into, out
        handle.by_module[name] = (into, out)
        handle.hooks.append(module.register_forward_pre_hook(_input_hook(into, model)))
        handle.hooks.append(module.register_forward_hook(_output_hook(out, model)))
    return handle


def _input_hook(observer: ActivationObserver, model: nn.Module):
    def hook(_module, args):
        observer.train(model.training)
        return (observer(args[0]), *args[1:])

    return hook


def _output_hook(observer: ActivationObserver, model: nn.Module):
    def hook(_module, _args, output):
        observer.train(model.training)
        return observer(output)

    return hook


def observed_scales(graph, scales: dict[str, dict], ranges: dict[str, dict]) -> tuple[dict[str, dict], int]:
    """`scales` (calibrated, by ONNX tensor name) with the observers' grids put in where they apply.

    A Conv / Gemm / MatMul reading the weight `<module>.weight` gets its input and output from that
    module's observers; only tensors the calibration chose to quantize are replaced (never added, so
    the QDQ layout ORT fuses stays the same), and none that a max pool / reshape-like node shares with its
    neighbour: ORT gives those one grid on both sides so it can drop the requantization (a different grid
    on one side cost ~15% time on LeNet-5). Returns (scales, how many were replaced).
    """
    scales = {k: dict(v) for k, v in scales.items()}
    chained = _scale_chained(graph)
    replaced = 0
    for node in graph.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        module = node.input[1].removesuffix(".weight")
        if module not in ranges or node.input[1] == module:
            continue
        for tensor, kind in ((node.input[0], "in"), (node.output[0], "out")):
            if tensor in chained or tensor not in scales or kind not in ranges[module]:
                continue
            if scales[tensor].get("dtype") == "int8":
                scale, zero = ranges[module][kind]
                scales[tensor].update(scale=float(torch.tensor(scale, dtype=torch.float32)), zero_point=int(zero))
                replaced += 1
    return scales, replaced


# ops whose input and output ORT's quantizer keeps on one grid (values pass through unchanged)
_SAME_GRID = {"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice"}


def _scale_chained(graph) -> set[str]:
    """Tensors read or written by a node that keeps its input's grid."""
    return {t for n in graph.graph.node if n.op_type in _SAME_GRID for t in (*n.input[:1], *n.output)}
