"""`compress()`: the Deep Compression pipeline on a PyTorch model.

dense -> (fold BatchNorm) -> prune (iterative, fine-tuning between steps) -> share weights
(k-means codebooks) -> fine-tune centroids -> `Compressed` (model, LayerStates, skipped layers,
accuracy per stage) -> `.save()` writes the `.dcz` through compressor.export.
The user's model is never modified: the pipeline works on a copy.
"""

from __future__ import annotations

import copy
import functools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

from dcz.compressor import linear, qat
from dcz.compressor.averaging import WeightAverage
from dcz.compressor.config import CompressConfig, LayerPlan, as_config
from dcz.compressor.errors import CompressError
from dcz.compressor.finetune import LossFn, OptimizerFactory, finetune
from dcz.compressor.prune import current_mask, prune_step
from dcz.compressor.prune_methods import METHODS, ScheduledPruning, check_trainable
from dcz.compressor.result import Compressed
from dcz.compressor.share import as_numpy, share_layer, shared_weight
from dcz.compressor.share_small import bias_state, share_bias
from dcz.compressor.state import LayerState

# Module types whose `.weight` the pipeline compresses.
SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)
_CONV_BN = ((nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d))


def compress(
    model: nn.Module,
    example_input,
    config: CompressConfig | Mapping[str, Any] | None = None,
    train_loader: Iterable | None = None,
    eval_fn: Callable[[nn.Module], float] | None = None,
    *,
    loss_fn: LossFn | None = None,
    optimizer_factory: OptimizerFactory | None = None,
    progress: bool = True,
) -> Compressed:
    """Prune, share weights and fine-tune a copy of `model` as `config` says.

    train_loader yields (inputs, targets) batches; without it, compression is post-training
    (no fine-tuning, whatever the epochs say). eval_fn(model) -> metric is called after each
    stage. optimizer_factory(params, lr) overrides the default Adam.
    """
    config = as_config(config)
    loss_fn = _task_loss(loss_fn, config)
    torch.manual_seed(config.seed)
    work = _private_copy(model, share_parameters=train_loader is None).eval()
    _check_runs(work, example_input)
    folded = fold_batchnorm(work) if config.fold_batchnorm else []
    teacher = _teacher(work, config, train_loader)
    layers, skipped = find_layers(work, config)
    accuracy: dict[str, float] = {}
    _measure(accuracy, "dense", eval_fn, work)

    def recover(epochs: int, lr: float, desc: str, after_batch=None, hold: float = 0.0) -> bool:
        if train_loader is None or epochs == 0:
            return False
        finetune(
            work,
            train_loader,
            epochs,
            lr,
            loss_fn=loss_fn,
            optimizer_factory=optimizer_factory,
            teacher=teacher,
            temperature=config.distill_temperature or 1.0,
            alpha=config.distill_alpha,
            progress=progress,
            desc=desc,
            after_batch=after_batch,
            schedule=config.lr_schedule,
            hold=hold if config.lr_schedule == "anneal" else 0.0,
        )
        return True

    pruning = {n: (m, p) for n, (m, p) in layers.items() if p.prune != "none"}
    if pruning:
        dense_std = {n: float(m.weight.detach().std()) for n, (m, _) in pruning.items()}
        classic = {n: lp for n, lp in pruning.items() if lp[1].prune not in METHODS}
        trained = {n: lp for n, lp in pruning.items() if lp[1].prune in METHODS}
        batches = check_trainable(trained, train_loader, config)
        schedule = ScheduledPruning(trained, config, batches, config.seed) if trained else None
        average = _averager(work, config, train_loader)
        tuned = False
        for step in range(1, config.prune_steps + 1):
            if classic:
                prune_step(classic, dense_std, step, config.prune_steps)
            if step == config.prune_steps and schedule is None:
                _measure(accuracy, "pruned", eval_fn, work)
            # 'anneal' decays the rate only once the masks are final (this step's share of the schedule before that: held)
            hold = 0.0 if schedule is None else schedule.held_share(step, config.prune_steps)
            hook = _pruning_hook(schedule, average, step, bool(classic), train_loader, config)
            tuned = recover(config.prune_epochs, config.lr, f"prune {step}/{config.prune_steps}", hook, hold) or tuned
        if schedule is not None:
            schedule.finish()
            _measure(accuracy, "pruned", eval_fn, work)
        if average is not None and average.apply():
            _measure(accuracy, "pruned+averaged", eval_fn, work)
        if tuned:
            _measure(accuracy, "pruned+finetuned", eval_fn, work)

    sharing = {n: (m, p) for n, (m, p) in layers.items() if p.share}
    activation_ranges: dict = {}
    schemes = {n: s for n, (_, p) in sharing.items() if (s := linear.scheme_of(p)) is not None}
    if schemes and config.qat_epochs and train_loader is not None:
        # quantization-aware training (compressor.qat): the weights learn their grid before sharing rounds them
        handle = qat.prepare(work, schemes)
        recover(config.qat_epochs, config.lr, "quantization-aware")
        _measure(accuracy, "quantization-aware", eval_fn, work)
        activation_ranges = handle.ranges()
        handle.finish()
    unshared: dict[str, str] = {}  # layers the safe defaults left unshared, with the reason
    if sharing:
        for index, (name, (module, plan)) in enumerate(sharing.items()):
            if isinstance(reason := share_layer(module, plan, seed=config.seed + index), str):
                unshared[name] = reason
        if config.bias_bits is not None:
            for index, name in enumerate(sharing):
                share_bias(sharing[name][0], config.bias_bits, seed=config.seed + index)
        _measure(accuracy, "shared", eval_fn, work)
        average = _averager(work, config, train_loader)
        if average is not None:  # labels and masks are fixed from the start of the centroid training
            average.settle(config.share_epochs * len(train_loader))
        if recover(config.share_epochs, config.share_lr or config.lr, "share", average and average.step):
            if average is not None:
                average.apply()
            _measure(accuracy, "shared+finetuned", eval_fn, work)

    states, skipped = collect_states(layers, unshared, skipped)
    _unshare_parameters(work, model)
    work.eval()
    return Compressed(
        model=work,
        example_input=example_input,
        layers=states,
        skipped=skipped,
        accuracy=accuracy,
        folded=folded,
        config=config,
        activation_ranges=activation_ranges,
    )


def _task_loss(loss_fn: LossFn | None, config: CompressConfig) -> LossFn | None:
    """The recovery's task loss: the caller's, or cross-entropy against labels smoothed by config.label_smoothing."""
    if not config.label_smoothing:
        return loss_fn
    if loss_fn is not None:
        raise CompressError("config.label_smoothing: applies to the default cross-entropy; drop it or loss_fn")
    return functools.partial(F.cross_entropy, label_smoothing=config.label_smoothing)


def _averager(work: nn.Module, config: CompressConfig, train_loader) -> WeightAverage | None:
    """The stage's WeightAverage of the trainable parameters (None: config.average 'none' or no training)."""
    if config.average == "none" or train_loader is None:
        return None
    try:
        len(train_loader)
    except TypeError:
        raise CompressError(f"average {config.average!r}: the train loader must have a len()") from None
    return WeightAverage(work, config.average, config.average_decay, config.average_start)


def _pruning_hook(schedule, average: WeightAverage | None, step: int, classic: bool, train_loader, config):
    """after_batch of pruning step `step`: the schedule's mask updates, then the average once every mask is
    final (the schedule has finished; with classic rules, in their last step)."""
    if average is None:
        return schedule.after_batch if schedule is not None else None
    per_step = config.prune_epochs * len(train_loader)
    left = (config.prune_steps - step + 1) * per_step  # batches left in the pruning stage
    final_step = step == config.prune_steps or not classic
    if schedule is None and final_step:
        average.settle(left)

    def after_batch() -> None:
        nonlocal left
        left -= 1
        if schedule is not None:
            schedule.after_batch()
            if schedule.finished and final_step:
                average.settle(left)
        average.step()

    return after_batch


def _private_copy(model: nn.Module, share_parameters: bool) -> nn.Module:
    """A deep copy of `model`; with share_parameters, its parameters alias the model's storage.

    Without fine-tuning nothing writes into a parameter in place (pruning and sharing replace
    tensors, never overwrite them), so the copy need not duplicate the weights while compressing
    (a full copy of a VGG-sized model is +1x its float32 size at the peak). `_unshare_parameters`
    makes whatever still aliases the user's model private before compress() returns.
    """
    memo: dict[int, object] = {}
    if share_parameters:
        for param in model.parameters():
            memo[id(param)] = nn.Parameter(param.detach(), requires_grad=param.requires_grad)
    return copy.deepcopy(model, memo)


def _unshare_parameters(work: nn.Module, model: nn.Module) -> None:
    """Clone every tensor of `work` that still shares storage with the user's `model`."""
    theirs = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers()) if t.numel()}
    for tensor in list(work.parameters()) + list(work.buffers()):
        if tensor.numel() and tensor.untyped_storage().data_ptr() in theirs:
            tensor.data = tensor.data.clone()


def find_layers(
    model: nn.Module, config: CompressConfig
) -> tuple[dict[str, tuple[nn.Module, LayerPlan]], dict[str, str]]:
    """Compressible weights (param name -> (module, plan)) and the weights kept raw, with reasons."""
    layers: dict[str, tuple[nn.Module, LayerPlan]] = {}
    skipped: dict[str, str] = {}
    for module_name, module in _modules_outside_parametrizations(model):
        for param_name, param in _own_parameters(module):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if param.dim() < 2:
                continue  # biases, norms: small, stored raw by the exporter
            if not isinstance(module, SUPPORTED) or param_name != "weight":
                skipped[full] = f"unsupported layer type {type(module).__name__}: kept raw"
                continue
            plan = config.for_layer(full, type(module).__name__)
            if plan.skip:
                skipped[full] = "config: skip"
            elif param.numel() < config.min_weights:
                skipped[full] = f"{param.numel()} weights < min_weights {config.min_weights}: kept raw"
            else:
                layers[full] = (module, plan)
    config.check_names(list(layers) + list(skipped))
    return layers, skipped


def _modules_outside_parametrizations(model: nn.Module):
    """(name, module) of `model`, leaving out parametrization containers and what they hold."""
    inside = {
        id(sub)
        for module in model.modules()
        if parametrize.is_parametrized(module)
        for sub in module.parametrizations.modules()
    }
    return [(name, module) for name, module in model.named_modules() if id(module) not in inside]


def _own_parameters(module: nn.Module):
    """(name, parameter) of the module itself; a parametrized tensor by its own name, with its original
    (find_layers then sees a model a Pruner has prepared as the plain model it was)."""
    own = list(module.named_parameters(recurse=False))
    if parametrize.is_parametrized(module):
        own += [(name, chain.original) for name, chain in module.parametrizations.items()]
    return own


def collect_states(
    layers: Mapping[str, tuple[nn.Module, LayerPlan]], reasons: Mapping[str, str], skipped: dict[str, str]
) -> tuple[dict[str, LayerState], dict[str, str]]:
    """LayerStates of the layers (and shared biases) that were pruned or shared; the others are added
    to `skipped` with their reason from `reasons` (default: the config asked for neither)."""
    states = {}
    for name, (module, plan) in layers.items():
        state = layer_state(name, module, plan)
        if state is None:
            skipped[name] = reasons.get(name, "config: neither pruned nor shared")
        else:
            states[name] = state
        bias_name = name.removesuffix("weight") + "bias"
        if (bias := bias_state(bias_name, module)) is not None:
            states[bias_name] = bias
    return states, skipped


def layer_state(name: str, module: nn.Module, plan: LayerPlan) -> LayerState | None:
    """The LayerState of one compressed module.weight (None if it was neither pruned nor shared)."""
    shared = shared_weight(module)
    mask = current_mask(module)
    shape = _weight_shape(module)
    layer_type = type(module).__name__
    if shared is not None:
        return LayerState(
            name=name,
            layer_type=layer_type,
            shape=shape,
            mask=as_numpy(shared.mask),
            codebook=as_numpy(shared.centroids).astype("float32"),
            labels=as_numpy(shared.labels),
            label_bits=getattr(shared, "bits", plan.bits),
            gap_bits=plan.gap_bits,
            group_rows=shared.group_rows,
            linear=getattr(shared, "linear", None),
            sqnr_db=getattr(shared, "sqnr_db", None),  # measured when shared (before any fine-tuning)
        )
    if mask is not None:
        with torch.no_grad():
            values = as_numpy(module.weight).astype("float32", copy=False)
        return LayerState(
            name=name, layer_type=layer_type, shape=shape, mask=as_numpy(mask), gap_bits=plan.gap_bits, values=values
        )
    return None


def _weight_shape(module: nn.Module) -> tuple[int, ...]:
    """module.weight's shape without evaluating its parametrizations (they all keep the shape)."""
    if parametrize.is_parametrized(module, "weight"):
        return tuple(module.parametrizations["weight"].original.shape)
    return tuple(module.weight.shape)


def fold_batchnorm(model: nn.Module) -> list[str]:
    """Fold each BatchNorm that directly and only follows a conv into that conv (in place).

    Valid only where the conv's output feeds nothing but the BatchNorm and each module is called
    once; found with torch.fx. Models fx cannot trace keep their BatchNorms (returns []).
    """
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # fx cannot trace data-dependent control flow; folding is an optimisation
        return []
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    folded = []
    for node in graph.nodes:
        if node.op != "call_module" or not node.args or not isinstance(node.args[0], torch.fx.Node):
            continue
        source = node.args[0]
        if source.op != "call_module" or len(source.users) != 1 or calls[node.target] != 1 or calls[source.target] != 1:
            continue
        conv, bn = modules[source.target], modules[node.target]
        if not any(type(conv) is c and type(bn) is b for c, b in _CONV_BN) or not bn.track_running_stats:
            continue
        fused = fuse_conv_bn_eval(conv.eval(), bn.eval())
        _replace(model, source.target, fused)
        _replace(model, node.target, nn.Identity())
        folded.append(node.target)
    return folded


def _replace(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _check_runs(model: nn.Module, example_input) -> None:
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    try:
        with torch.no_grad():
            model(*args)
    except Exception as error:
        raise CompressError(
            f"example_input: the model fails on it ({type(error).__name__}: {error})".splitlines()[0]
        ) from error


def _teacher(model: nn.Module, config: CompressConfig, train_loader) -> nn.Module | None:
    if config.distill_temperature is None or train_loader is None:
        return None
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _measure(accuracy: dict[str, float], stage: str, eval_fn, model: nn.Module) -> None:
    if eval_fn is not None:
        model.eval()
        accuracy[stage] = float(eval_fn(model))
