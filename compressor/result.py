"""`Compressed`: what `compress()` and `Pruner` / `Palettizer.finalize()` return, ready to `.save()`.

Its own module, importing no torch (torch, onnx and the exporter load when a method needs them):
`dcz.Compressed` and `from dcz import *` stay torch-free (a Compressed only ever holds a torch model,
made by code that imported torch already).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dcz.compressor.config import CompressConfig
from dcz.compressor.errors import CompressError
from dcz.compressor.report import ACCURACY_KEY
from dcz.compressor.state import LayerState, safe_metadata

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


@dataclass
class Compressed:
    """The result of `compress()`.

    model     the compressed torch model (parametrized: it computes with the shared/pruned weights).
    layers    parameter name -> LayerState, for every compressed weight.
    skipped   parameter name -> why it is kept raw (never dropped: the export stores it as is).
    accuracy  stage -> eval_fn result: dense, pruned, pruned+finetuned, shared, shared+finetuned.
    folded    BatchNorm modules folded into their preceding convolution.
    """

    model: nn.Module
    example_input: Any
    layers: dict[str, LayerState]
    skipped: dict[str, str]
    accuracy: dict[str, float] = field(default_factory=dict)
    folded: list[str] = field(default_factory=list)
    config: CompressConfig = field(default_factory=CompressConfig)
    activation_ranges: dict = field(default_factory=dict)  # QAT's int8 activation grids by module (compressor.qat)

    def _activation_scales(self, calib, method: str) -> dict[str, Any]:
        """`compress.activations`: ORT's calibrator on the dense export of this model (same tensor names)."""
        import onnx

        from dcz.compressor import qat, qdq
        from dcz.compressor.export import export_onnx_dense

        graph = onnx.load_from_string(export_onnx_dense(self.model, self.example_input, self.layers))
        scales = qdq.calibrate(graph, _calibration_arrays(calib, graph), method)
        if not scales:
            return {}
        extra = {}
        if self.activation_ranges:  # the grids QAT trained with replace the calibrated ones where they apply
            scales, replaced = qat.observed_scales(graph, scales, self.activation_ranges)
            extra["compress.qat_activations"] = replaced
        return {qdq.ACTIVATIONS_KEY: scales, "compress.calib_method": method, **extra}

    def metadata(self) -> dict[str, Any]:
        """The `compress.*` metadata recorded in the `.dcz`."""
        return {
            "compress.config": self.config.to_dict(),
            "compress.accuracy": dict(self.accuracy),
            "compress.skipped": dict(sorted(self.skipped.items())),
            "compress.folded_batchnorm": list(self.folded),
            **safe_metadata(self.layers),
        }

    def save(
        self,
        path,
        metadata: Mapping[str, Any] | None = None,
        huffman: bool = True,
        compact_header: bool | None = None,
        *,
        compact_graph: bool = False,
        calib=None,
        calib_method: str = "minmax",
        lean_metadata: bool = False,
        range_coding: bool = False,
        compact_container: bool = False,
    ):
        """Write the `.dcz` (atomic) through compressor.export; returns its formats.SizeReport.
        compact_header: the header zlib-compressed (format 1.2; ~1.3 KB less, for very small models); None: when
        that saves >= 1% of the file.
        compact_graph: default attributes, node names and long value names left out of the graph (no format change).
        calib: sample inputs (array, tensor, .npz path or {input: array}): static int8 activation scales
        measured on the exported graph by `calib_method` (compressor.qdq), so linear grids run int8 kernels.
        lean_metadata: record only the accuracy per stage and what running the file needs, not the config,
        provenance and per-layer notes (~330 B less after zlib; for ~10 KB files such as the LeNet frontier).
        range_coding: streams of byte symbols may take the adaptive range coding where it is smaller (format 1.3,
        SPEC 3.4.2; 4-5% of a LeNet frontier file).
        compact_container: the compact container (format 1.4, SPEC 2.6: binary tensor table, varint directory and
        stream headers, no padding; ~860-930 B less on the LeNet frontier files)."""
        from dcz.compressor.export import export_dcz  # torch.onnx + onnx: loaded only when saving

        extra = {} if calib is None else self._activation_scales(calib, calib_method)
        own = {ACCURACY_KEY: dict(self.accuracy)} if lean_metadata else self.metadata()
        return export_dcz(
            self.model,
            self.example_input,
            self.layers,
            path,
            metadata={**own, **extra, **dict(metadata or {})},
            huffman=huffman,
            compact_header=compact_header,
            kept_raw=self.skipped,  # what the config kept raw stays raw; only unknown layer types are shared
            compact_graph=compact_graph,
            lean_metadata=lean_metadata,
            range_coding=range_coding,
            compact_container=compact_container,
        )


def _calibration_arrays(calib, graph) -> Any:
    """{input name: array} for compressor.qdq.calibrate from an array / tensor (the one input) or as given."""
    import torch

    if isinstance(calib, torch.Tensor):
        calib = calib.detach().cpu().numpy()
    if hasattr(calib, "shape"):
        from dcz.compressor.onnx_graph import input_names

        names = input_names(graph)
        if len(names) != 1:
            raise CompressError(f"calib: one array given for {len(names)} model inputs; pass {{input: array}}")
        return {names[0]: calib}
    return calib
