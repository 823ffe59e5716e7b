"""Strict configuration for the compression pipeline.

Settings are looked up per layer: by exact layer name, then by layer type ("Linear", "Conv2d",
"Gemm", ...), then by layer family ("conv" or "fc", so one entry covers torch and ONNX layers), then
the global entry, then the paper's defaults (Han, Mao & Dally 2016: 8-bit conv / 5-bit fc
codebooks, 8-bit conv / 5-bit fc relative indices). When no entry sets a layer's bits, its plan is
`auto` and compressor.safe picks them (the family default is then only a fallback label). This mirrors coremltools'
`OptimizationConfig(global_config, op_type_configs, op_name_configs)`.

`from_dict` rejects unknown keys and impossible values with a one-line `CompressError` that
names the key, e.g. ``config.by_name['fc1'].bits: must be an integer in 1..8, got 0``.
This module imports neither torch nor scikit-learn (the ONNX-in path uses it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dcz.compressor.checks import StrictConfig, check_bool, check_choice, check_float, check_int, fail, reject_unknown
from dcz.compressor.errors import CompressError
from dcz.compressor.prune_settings import DnsSettings, GmpSettings

PRUNE_METHODS = ("none", "threshold", "sparsity", "quality", "global", "gmp", "dns")
INIT_METHODS = ("linear", "density", "random", "kmeans++")
KMEANS_BACKENDS = ("exact", "sklearn")
PRUNE_PARAMETERS = ("threshold", "sparsity", "quality")  # belong to the prune method that reads them
LR_SCHEDULES = ("constant", "cosine", "anneal")
AVERAGE_METHODS = ("none", "swa", "ema")  # compressor.averaging (kept here: this module imports no torch)

CONV_TYPES = frozenset({"Conv1d", "Conv2d", "Conv3d", "Conv", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose"})
FC_TYPES = frozenset({"Linear", "Gemm", "MatMul", "Bilinear"})


def layer_family(layer_type: str) -> str:
    """'conv', 'fc' or 'other': the paper sets its defaults per family."""
    if layer_type in CONV_TYPES or layer_type.lower() == "conv":
        return "conv"
    if layer_type in FC_TYPES or layer_type.lower() == "fc":
        return "fc"
    return "other"


# --- per-layer settings -------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerConfig(StrictConfig):
    """Settings for some layers; None means 'inherit from the next, more general entry'.

    prune       'none' | 'threshold' (|w| < threshold) | 'sparsity' (per-layer percentile) |
                'quality' (|w| < quality * std(w), Han et al. 2015) | 'global' (one threshold
                across all 'global' layers reaching `sparsity` overall) | 'gmp' (gradual magnitude
                pruning, per batch) | 'dns' (dynamic network surgery): see compressor.prune_settings.
    sparsity    fraction of weights removed, in [0, 1) ('sparsity', 'global', 'gmp', 'dns').
    threshold   absolute magnitude threshold, >= 0 ('threshold').
    quality     multiple of the layer's weight standard deviation, >= 0 ('quality').
    share       whether to share weights through a k-means codebook.
    bits        codebook index bits, 1..8 (k = 2**bits centroids).
    gap_bits    bits per relative column index of the sparse encoding, 1..8.
    init        centroid init: 'linear' (the paper's best), 'density', 'random', 'kmeans++'.
    kmeans      'exact' (our sorted 1-D Lloyd) or 'sklearn' (sklearn.cluster.KMeans, the reference).
    group_rows  rows of the weight's 2-D view sharing one codebook (per-channel palettes); None = one.
    skip        keep this layer raw (uncompressed).
    quantize    'kmeans' (the paper's trained codebook) or a linear grid 'int2'..'int8' / 'uint2'..'uint8'
                (compressor.linear; the bits come from the name).
    symmetric   linear grids: zero point fixed at the middle (True) or fitted to the weights' range (False).
    per_channel linear grids: one scale / zero point per output channel (row of the 2-D view).
    """

    prune: str | None = None
    sparsity: float | None = None
    threshold: float | None = None
    quality: float | None = None
    share: bool | None = None
    bits: int | None = None
    gap_bits: int | None = None
    init: str | None = None
    kmeans: str | None = None
    group_rows: int | None = None
    skip: bool | None = None
    quantize: str | None = None
    symmetric: bool | None = None
    per_channel: bool | None = None
    where: str = field(default="config", compare=False, repr=False)

    def __post_init__(self) -> None:
        w = self.where
        if self.prune is not None:
            check_choice(f"{w}.prune", self.prune, PRUNE_METHODS)
        if self.sparsity is not None:
            check_float(f"{w}.sparsity", self.sparsity, 0.0, 1.0, high_open=True)
        if self.threshold is not None:
            check_float(f"{w}.threshold", self.threshold, 0.0)
        if self.quality is not None:
            check_float(f"{w}.quality", self.quality, 0.0)
        if self.share is not None:
            check_bool(f"{w}.share", self.share)
        if self.bits is not None:
            check_int(f"{w}.bits", self.bits, 1, 8)
        if self.gap_bits is not None:
            check_int(f"{w}.gap_bits", self.gap_bits, 1, 8)
        if self.init is not None:
            check_choice(f"{w}.init", self.init, INIT_METHODS)
        if self.kmeans is not None:
            check_choice(f"{w}.kmeans", self.kmeans, KMEANS_BACKENDS)
        if self.group_rows is not None:
            check_int(f"{w}.group_rows", self.group_rows, 1)
        if self.skip is not None:
            check_bool(f"{w}.skip", self.skip)
        if self.quantize is not None and self.quantize != "kmeans":
            from dcz.compressor.linear import parse_quantize

            try:
                parse_quantize(self.quantize if isinstance(self.quantize, str) else repr(self.quantize))
            except CompressError as error:
                raise fail(
                    f"{w}.quantize", f"must be kmeans, int2..int8 or uint2..uint8; got {self.quantize!r}"
                ) from error
        for key in ("symmetric", "per_channel"):
            if getattr(self, key) is not None:
                check_bool(f"{w}.{key}", getattr(self, key))


# The paper's defaults per family (Han, Mao & Dally 2016, sections 2-3).
_FAMILY_DEFAULTS = {
    "conv": LayerConfig(bits=8, gap_bits=8, where="defaults.conv"),
    "fc": LayerConfig(bits=5, gap_bits=5, where="defaults.fc"),
    "other": LayerConfig(bits=8, gap_bits=8, where="defaults.other"),
}
_BASE_DEFAULTS = LayerConfig(
    prune="none",
    sparsity=0.0,
    threshold=0.0,
    quality=0.0,
    share=True,
    init="linear",
    kmeans="exact",
    skip=False,
    quantize="kmeans",
    symmetric=True,
    per_channel=False,
    where="defaults",
)


@dataclass(frozen=True)
class LayerPlan:
    """Fully resolved settings for one layer (every field concrete, except group_rows)."""

    name: str
    layer_type: str
    prune: str
    sparsity: float
    threshold: float
    quality: float
    share: bool
    bits: int
    gap_bits: int
    init: str
    kmeans: str
    group_rows: int | None
    skip: bool
    quantize: str = "kmeans"
    symmetric: bool = True
    per_channel: bool = False
    auto: bool = False  # no bits set by the user: compressor.safe picks them per layer


# whole-run settings written by to_dict only when set: older configs read back the same
_LEFT_OUT_WHEN_DEFAULT = (
    ("bias_bits", None),
    ("qat_epochs", 0),
    ("lr_schedule", "constant"),
    ("average", "none"),
    ("average_decay", 0.998),
    ("average_start", 0.0),
    ("label_smoothing", 0.0),
)


# --- whole-run settings -------------------------------------------------------------------------


@dataclass(frozen=True)
class CompressConfig:
    """How to compress a model.

    global_config   LayerConfig applied to every layer (dict key "global").
    by_type         {layer type or family ('conv'/'fc'): LayerConfig}.
    by_name         {layer name (torch parameter or ONNX initializer name): LayerConfig}.
    prune_steps     the iterative schedule: reach the target in this many prune + fine-tune rounds.
    prune_epochs    fine-tuning epochs after each prune step (needs a train loader).
    share_epochs    epochs training the centroids after weight sharing (needs a train loader).
    qat_epochs      linear grids: epochs of quantization-aware training before the weights are rounded
                    (fake-quantized int weights and int8 activations, compressor.qat; needs a train loader).
    lr, share_lr    learning rates of the default Adam optimizer while pruning / sharing.
    lr_schedule     'constant', or 'cosine': each recovery stage decays its rate to 0 along a half cosine
                    (ends the pruning and the centroid training at a settled minimum), or 'anneal': the rate
                    stays constant while masks may still change (dns before `freeze`, gmp before `end`) and
                    decays along a half cosine to 0 over the rest of the stage (the whole centroid training).
    distill_temperature  if set, recover with knowledge distillation from the dense model.
    distill_alpha   weight of the soft-target loss (the rest is the task loss), in [0, 1].
    fold_batchnorm  fold BatchNorm into the preceding conv before compressing (where valid).
    min_weights     layers with fewer weights are kept raw.
    seed            seeds k-means init and training, so a run is reproducible.
    gmp, dns        settings of the training-time pruning methods (compressor.prune_settings).
    bias_bits       if set (1..8), biases of shared layers (>= 64 values) get a codebook of this many bits.
    average         'none', or 'swa' / 'ema': the recovered weights are replaced by their average over the
                    settled part of each stage (after the training-time masks freeze, or over the last pruning
                    step's fine-tuning; over the centroid training), compressor.averaging. Needs len(loader).
    average_decay   'ema': the moving average's decay per optimizer step, in [0, 1).
    average_start   fraction of each settled part skipped before averaging begins, in [0, 1).
    label_smoothing recovery's task loss (the default cross-entropy) against labels smoothed by this much, in
                    [0, 1) (Szegedy et al. 2016; with distillation, only the hard-label part).
    """

    global_config: LayerConfig = field(default_factory=LayerConfig)
    by_type: Mapping[str, LayerConfig] = field(default_factory=dict)
    by_name: Mapping[str, LayerConfig] = field(default_factory=dict)
    prune_steps: int = 1
    prune_epochs: int = 0
    share_epochs: int = 0
    lr: float = 1e-3
    share_lr: float | None = None
    distill_temperature: float | None = None
    distill_alpha: float = 0.5
    fold_batchnorm: bool = True
    min_weights: int = 0
    seed: int = 0
    gmp: GmpSettings = field(default_factory=GmpSettings)
    dns: DnsSettings = field(default_factory=DnsSettings)
    bias_bits: int | None = None
    qat_epochs: int = 0
    lr_schedule: str = "constant"
    average: str = "none"
    average_decay: float = 0.998
    average_start: float = 0.0
    label_smoothing: float = 0.0

    _DICT_KEYS = (
        "global",
        "by_type",
        "by_name",
        "prune_steps",
        "prune_epochs",
        "share_epochs",
        "lr",
        "share_lr",
        "distill_temperature",
        "distill_alpha",
        "fold_batchnorm",
        "min_weights",
        "seed",
        "gmp",
        "dns",
        "bias_bits",
        "qat_epochs",
        "lr_schedule",
        "average",
        "average_decay",
        "average_start",
        "label_smoothing",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.global_config, LayerConfig):
            raise CompressError(f"config.global: must be a LayerConfig, got {type(self.global_config).__name__}")
        for attr in ("by_type", "by_name"):
            table = getattr(self, attr)
            if not isinstance(table, Mapping):
                raise CompressError(f"config.{attr}: must be a mapping, got {type(table).__name__}")
            for key, value in table.items():
                if not isinstance(key, str) or not isinstance(value, LayerConfig):
                    raise CompressError(f"config.{attr}[{key!r}]: must map a name to a LayerConfig")
        check_int("config.prune_steps", self.prune_steps, 1)
        check_int("config.prune_epochs", self.prune_epochs, 0)
        check_int("config.share_epochs", self.share_epochs, 0)
        check_int("config.qat_epochs", self.qat_epochs, 0)
        check_float("config.lr", self.lr, 0.0, low_open=True)
        if self.share_lr is not None:
            check_float("config.share_lr", self.share_lr, 0.0, low_open=True)
        if self.distill_temperature is not None:
            check_float("config.distill_temperature", self.distill_temperature, 0.0, low_open=True)
        check_float("config.distill_alpha", self.distill_alpha, 0.0, 1.0)
        check_bool("config.fold_batchnorm", self.fold_batchnorm)
        check_int("config.min_weights", self.min_weights, 0)
        check_int("config.seed", self.seed, 0)
        if not isinstance(self.gmp, GmpSettings) or not isinstance(self.dns, DnsSettings):
            raise CompressError("config.gmp / config.dns: must be GmpSettings / DnsSettings")
        if self.bias_bits is not None:
            check_int("config.bias_bits", self.bias_bits, 1, 8)
        check_choice("config.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("config.average", self.average, AVERAGE_METHODS)
        check_float("config.average_decay", self.average_decay, 0.0, 1.0, high_open=True)
        check_float("config.average_start", self.average_start, 0.0, 1.0, high_open=True)
        check_float("config.label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> CompressConfig:
        """Build from plain data (JSON/YAML); unknown keys and impossible values raise CompressError."""
        data = {} if data is None else data
        reject_unknown("config", data, list(cls._DICT_KEYS))
        kwargs = {k: v for k, v in data.items() if k not in ("global", "by_type", "by_name", "gmp", "dns")}
        kwargs["gmp"] = GmpSettings.from_dict(data.get("gmp"))
        kwargs["dns"] = DnsSettings.from_dict(data.get("dns"))
        kwargs["global_config"] = LayerConfig.from_dict(data.get("global"), "config.global")
        for table in ("by_type", "by_name"):
            entries = data.get(table) or {}
            if not isinstance(entries, Mapping):
                raise CompressError(f"config.{table}: must be a mapping, got {type(entries).__name__}")
            kwargs[table] = {k: LayerConfig.from_dict(v, f"config.{table}[{k!r}]") for k, v in entries.items()}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; `from_dict(to_dict())` gives an equal config."""
        out: dict[str, Any] = {
            "global": self.global_config.to_dict(),
            "by_type": {k: v.to_dict() for k, v in self.by_type.items()},
            "by_name": {k: v.to_dict() for k, v in self.by_name.items()},
        }
        for key in self._DICT_KEYS[3:]:
            value = getattr(self, key)
            if (key, value) in _LEFT_OUT_WHEN_DEFAULT:
                continue  # left out when unset: older configs read back the same
            if key in ("gmp", "dns"):
                if value != type(value)():  # defaults left out: older configs read back the same
                    out[key] = value.to_dict()
            else:
                out[key] = value
        return out

    def for_layer(self, name: str, layer_type: str) -> LayerPlan:
        """Resolve one layer's settings: name, then type, then family, then global, then defaults."""
        family = layer_family(layer_type)
        chain = [
            self.by_name.get(name),
            self.by_type.get(layer_type),
            self.by_type.get(family),
            self.global_config,
            _FAMILY_DEFAULTS[family],
            _BASE_DEFAULTS,
        ]
        resolved: dict[str, Any] = {}
        for key in LayerConfig.keys():
            resolved[key] = next(
                (getattr(c, key) for c in chain if c is not None and getattr(c, key) is not None), None
            )
        auto = resolved["quantize"] == "kmeans" and all(c is None or c.bits is None for c in chain[:4])
        return LayerPlan(name=name, layer_type=layer_type, **resolved, auto=auto)

    def with_overrides(
        self,
        everywhere: Mapping[str, Any] | None = None,
        by_type: Mapping[str, Mapping[str, Any]] | None = None,
        by_name: Mapping[str, Mapping[str, Any]] | None = None,
        **settings: Any,
    ) -> CompressConfig:
        """A copy with settings layered on top, as the command line's flags go over a config file.

        everywhere  LayerConfig fields for every layer: set in the global entry and dropped from every
                    by_type / by_name entry (a setting given once means every layer). Setting `prune`
                    also drops their threshold / sparsity / quality, which belong to the method.
        by_type, by_name  {layer type or name: LayerConfig fields} merged into that entry (made if absent),
                    after the drops above.
        settings    whole-run fields (seed, prune_epochs, ...), replaced.
        Strict as from_dict: unknown keys and impossible values raise CompressError naming them.
        """
        everywhere = dict(everywhere or {})
        reject_unknown("config.global", everywhere, LayerConfig.keys())
        reject_unknown("config", settings, [k for k in self._DICT_KEYS[3:] if k not in ("gmp", "dns")])
        dropped = set(everywhere) | (set(PRUNE_PARAMETERS) if "prune" in everywhere else set())
        tables = {}
        for table, added in (("by_type", by_type or {}), ("by_name", by_name or {})):
            entries = {
                key: {k: v for k, v in entry.to_dict().items() if k not in dropped}
                for key, entry in getattr(self, table).items()
            }
            for key, values in added.items():
                reject_unknown(f"config.{table}[{key!r}]", values, LayerConfig.keys())
                entries[key] = {**entries.get(key, {}), **values}
            tables[table] = {k: LayerConfig.from_dict(v, f"config.{table}[{k!r}]") for k, v in entries.items()}
        merged = LayerConfig.from_dict({**self.global_config.to_dict(), **everywhere}, "config.global")
        return replace(self, global_config=merged, **tables, **settings)

    def check_names(self, known_names: list[str]) -> None:
        """Fail if by_name names a layer the model does not have (a typo would silently do nothing)."""
        for key in self.by_name:
            if key not in known_names:
                raise CompressError(f"config.by_name[{key!r}]: no compressible layer has this name")


def as_config(config: CompressConfig | Mapping[str, Any] | None) -> CompressConfig:
    """The CompressConfig for what a caller passed: None (the paper's defaults), a CompressConfig,
    or a mapping validated by CompressConfig.from_dict."""
    if config is None:
        return CompressConfig()
    if isinstance(config, CompressConfig):
        return config
    if isinstance(config, Mapping):
        return CompressConfig.from_dict(config)
    raise CompressError(f"config: must be a CompressConfig or a mapping, got {type(config).__name__}")
