"""Time the budget solver's candidate measurement on every ResNet-18 weight (default grid).

    python -m tools.bench.bench_budget_candidates [--layers N]

ResNet-18's 21 Conv/Linear weights (ImageNet shapes, 11.7M weights) are declared here with
PyTorch's default initialisation (uniform +-1/sqrt(fan_in)), so no torchvision is needed;
the Fisher weights are random. Sizing and damage do not depend on training, only on the values'
spread, so the timing carries over to a trained model.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dcz.compressor.budget.candidates import CandidateGrid, measure_layer


def resnet18_weights() -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of ResNet-18's Conv and Linear weights, torchvision's naming."""
    shapes = [("conv1.weight", (64, 3, 7, 7))]
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            first = block == 0
            shapes.append((f"layer{stage}.{block}.conv1.weight", (cout, cin if first else cout, 3, 3)))
            shapes.append((f"layer{stage}.{block}.conv2.weight", (cout, cout, 3, 3)))
            if first and cin != cout:
                shapes.append((f"layer{stage}.{block}.downsample.0.weight", (cout, cin, 1, 1)))
        cin = cout
    shapes.append(("fc.weight", (1000, 512)))
    return shapes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=0, help="only the first N layers (0 = all)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    layers = resnet18_weights()[: args.layers or None]
    total, t0, c0 = 0, time.perf_counter(), time.process_time()
    for name, shape in layers:
        fan_in = int(np.prod(shape[1:]))
        weight = rng.uniform(-1, 1, size=shape).astype(np.float32) / np.sqrt(fan_in)
        fisher = rng.random(shape).astype(np.float32)
        t = time.perf_counter()
        out = measure_layer(name, "Conv" if len(shape) == 4 else "Linear", weight, fisher, CandidateGrid())
        total += weight.size
        print(
            f"{name:32s} {weight.size:>10,} weights {len(out.candidates):4d} candidates {time.perf_counter() - t:6.1f} s"
        )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"resnet18: {len(layers)} layers, {total:,} weights, candidates measured in {wall:.1f} s wall, {cpu:.1f} s CPU"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
