"""Runs INSIDE a separate NNCodec environment (numpy<2): encodes each tensor of an .npz with NNCodec.

    <nncodec-venv>/bin/python tools/bench/nncodec_encode.py tensors.npz result.json

Called by tools/bench/nncodec_compare.py, which documents the environment. Writes, per setting and
tensor, NNCodec's bitstream bytes and the largest |decoded - given| value. No dcz import here.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import sys
import tempfile
import types

# NNCodec's package imports torchvision (for its model zoo and data sets) even for tensor coding. The
# torchvision wheels on PyPI for Linux are CUDA builds that cannot load beside a CPU-only torch, and
# the tensor coding path (nnc_core + the DeepCABAC extension) never calls it: an inert stand-in.


class _Inert(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert(f"{self.__name__}.{name}")

    def __call__(self, *args, **kwargs):
        return _Inert("call")

    def __mro_entries__(self, bases):
        return (object,)


class _InertFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Inert(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


SETTINGS = {
    "codebook": {"approx_method": "codebook"},
    "codebook qp-48": {"approx_method": "codebook", "qp": -48},
    "uniform qp-38 dq": {"approx_method": "uniform", "qp": -38, "use_dq": True},
}


def main(npz: str, out: str) -> None:
    sys.meta_path.insert(0, _InertFinder())
    import numpy as np
    from nncodec.nn import decode, encode

    tensors = dict(np.load(npz))
    scratch = tempfile.mkdtemp(prefix="nncodec-")  # NNCodec also writes its bitstreams to a folder
    result = {}
    for setting, args in SETTINGS.items():
        rows = {}
        for name, value in tensors.items():
            stream = encode({name: value}, args={**args, "verbose": False, "results": scratch})
            decoded = np.asarray(decode(stream, args={**args, "verbose": False, "results": scratch})[name]).reshape(
                value.shape
            )
            rows[name] = {"bytes": len(stream), "max_error": float(np.abs(decoded - value).max())}
        whole = encode(tensors, args={**args, "verbose": False, "results": scratch})
        result[setting] = {"tensors": rows, "whole_model_bytes": len(whole)}
    with open(out, "w") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
