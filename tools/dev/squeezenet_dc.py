"""The Deep Compression authors' own compressed SqueezeNet, read and re-encoded as .dcz.

The paper's authors released SqueezeNet v1.0 after pruning and weight sharing as one binary file
(`compressed_SqueezeNet.net`, 675,763 bytes) and a Caffe prototxt. This tool decodes that file,
checks it against the figures its release states, and writes the same pruned, shared weights as a
`.dcz` so the two containers can be compared byte for byte on identical content: the same mask,
the same codebooks, the same labels. Only the container (CSR rows, gap bits, Huffman streams)
differs.

    python -m tools.dev.squeezenet_dc [--release ../shared/data/squeezenet-deep-compression] [-o out.dcz]

Layout of the authors' `.net` file (from the release): uint32 stored-entry count per layer
(fillers included); then per layer in prototxt order: float32 codebook of 2**bits entries (8 bits
for layers whose name contains "conv", else 4; entry 0 is 0.0), float32 biases, cluster ids (one
per byte at 8 bits, two per byte low nibble first at 4 bits), 4-bit relative indices two per byte
(positions = cumsum(index + 1) - 1 over the flattened weight; a stored entry with cluster id 0 is
a filler). For tests and benchmarks only: the product never reads ../shared.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcz import formats

DEFAULT_RELEASE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "squeezenet-deep-compression"
NET_FILE = "compressed_SqueezeNet.net"
PROTOTXT = "SqueezeNet_deploy.prototxt"


@dataclass
class ConvLayer:
    name: str
    out_channels: int
    in_channels: int
    kernel: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels, self.kernel, self.kernel)

    @property
    def label_bits(self) -> int:
        return 8 if "conv" in self.name else 4


@dataclass
class DecodedLayer:
    layer: ConvLayer
    codebook: np.ndarray  # float32 (2**bits,), entry 0 is 0.0
    bias: np.ndarray
    mask: np.ndarray  # bool, layer.shape
    labels: np.ndarray  # uint8, layer.shape (0 where pruned)
    stored_entries: int

    def weight(self) -> np.ndarray:
        return self.codebook[self.labels.astype(np.int64)] * self.mask


def _blocks(text: str) -> list[str]:
    """Top-level `layer { ... }` blocks of a prototxt, in order."""
    blocks, depth, start = [], 0, None
    for match in re.finditer(r"layer\s*\{|\{|\}", text):
        token = match.group(0)
        if token.startswith("layer") and depth == 0:
            start, depth = match.start(), 1
        elif token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0 and start is not None:
                blocks.append(text[start : match.end()])
                start = None
    return blocks


def _field(block: str, key: str) -> list[str]:
    return re.findall(rf'\b{key}:\s*"?([^"\s]+)"?', block)


def parse_prototxt(text: str) -> list[ConvLayer]:
    """Convolution layers in file order, with input channels traced through Concat."""
    channels = {"data": 3}
    convs = []
    for block in _blocks(text):
        kind, name = _field(block, "type")[0], _field(block, "name")[0]
        bottoms, tops = _field(block, "bottom"), _field(block, "top")
        if kind == "Convolution":
            layer = ConvLayer(
                name, int(_field(block, "num_output")[0]), channels[bottoms[0]], int(_field(block, "kernel_size")[0])
            )
            convs.append(layer)
            channels[tops[0]] = layer.out_channels
        elif kind == "Concat":
            channels[tops[0]] = sum(channels[b] for b in bottoms)
        elif bottoms:
            channels[tops[0]] = channels[bottoms[0]]
    return convs


def _take(buf: memoryview, offset: int, size: int, what: str) -> tuple[memoryview, int]:
    if offset + size > len(buf):
        raise ValueError(f"{what}: needs {size} bytes at offset {offset}, file has {len(buf)}")
    return buf[offset : offset + size], offset + size


def _unpack_nibbles(raw: memoryview, count: int) -> np.ndarray:
    packed = np.frombuffer(raw, dtype=np.uint8)
    out = np.empty(packed.size * 2, dtype=np.uint8)
    out[0::2], out[1::2] = packed & 0x0F, packed >> 4
    return out[:count]


def read_release(net: bytes, layers: list[ConvLayer]) -> list[DecodedLayer]:
    """Decode the authors' file; raises ValueError if it is not consumed exactly."""
    buf = memoryview(net)
    counts_raw, offset = _take(buf, 0, 4 * len(layers), "entry counts")
    counts = np.frombuffer(counts_raw, dtype="<u4")
    decoded = []
    for layer, count in zip(layers, counts.tolist()):
        bits = layer.label_bits
        book_raw, offset = _take(buf, offset, 4 * (1 << bits), f"{layer.name} codebook")
        bias_raw, offset = _take(buf, offset, 4 * layer.out_channels, f"{layer.name} biases")
        label_bytes = count if bits == 8 else (count + 1) // 2
        labels_raw, offset = _take(buf, offset, label_bytes, f"{layer.name} cluster ids")
        index_raw, offset = _take(buf, offset, (count + 1) // 2, f"{layer.name} relative indices")
        ids = np.frombuffer(labels_raw, dtype=np.uint8) if bits == 8 else _unpack_nibbles(labels_raw, count)
        positions = np.cumsum(_unpack_nibbles(index_raw, count).astype(np.int64) + 1) - 1
        numel = int(np.prod(layer.shape))
        if count and positions[-1] >= numel:
            raise ValueError(f"{layer.name}: position {positions[-1]} past {numel} weights")
        keep = ids != 0
        mask = np.zeros(numel, dtype=bool)
        labels = np.zeros(numel, dtype=np.uint8)
        mask[positions[keep]] = True
        labels[positions[keep]] = ids[keep]
        decoded.append(
            DecodedLayer(
                layer,
                np.frombuffer(book_raw, dtype="<f4").copy(),
                np.frombuffer(bias_raw, dtype="<f4").copy(),
                mask.reshape(layer.shape),
                labels.reshape(layer.shape),
                count,
            )
        )
    if offset != len(buf):
        raise ValueError(f"{len(buf) - offset} trailing bytes after the last layer")
    return decoded


def to_dcz_tensors(decoded: list[DecodedLayer], gap_bits: int) -> list:
    """The same masks, codebooks and labels as .dcz tensors (weights sparse+shared, biases raw)."""
    tensors = []
    for item in decoded:
        name = item.layer.name
        tensors.append(
            formats.SparseShared(
                f"{name}.weight", item.mask, item.labels, item.codebook, item.layer.label_bits, gap_bits
            )
        )
        tensors.append(formats.Raw(f"{name}.bias", item.bias))
    return tensors


def load_release(release: Path) -> tuple[list[DecodedLayer], int]:
    layers = parse_prototxt((release / PROTOTXT).read_text())
    net = (release / NET_FILE).read_bytes()
    return read_release(net, layers), len(net)


def compare(release: Path, out: Path | None = None) -> dict:
    """Sizes of the authors' file and of .dcz files holding the identical weights."""
    decoded, release_bytes = load_release(release)
    result = {
        "layers": len(decoded),
        "weights": int(sum(d.mask.size for d in decoded)),
        "nonzeros": int(sum(d.mask.sum() for d in decoded)),
        "stored_entries_release": int(sum(d.stored_entries for d in decoded)),
        "release_bytes": release_bytes,
        "dense_fp32_bytes": int(sum(4 * (d.mask.size + d.bias.size) for d in decoded)),
        "dcz": {},
    }
    for gap_bits in (4, 5, 6):
        for huffman in (False, True):
            blob = formats.dumps(
                to_dcz_tensors(decoded, gap_bits),
                metadata={"source.model": "SqueezeNet v1.0 (Deep Compression release)"},
                huffman=huffman,
            )
            result["dcz"][f"gap{gap_bits}_{'huffman' if huffman else 'fixed'}"] = len(blob)
    if out is not None:
        formats.write(
            out, to_dcz_tensors(decoded, 4), metadata={"source.model": "SqueezeNet v1.0 (Deep Compression release)"}
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, default=DEFAULT_RELEASE)
    parser.add_argument("-o", "--output", type=Path, default=None, help="also write the .dcz (gap bits 4, Huffman)")
    args = parser.parse_args(argv)
    r = compare(args.release, args.output)
    print(
        f"layers {r['layers']}, weights {r['weights']:,}, nonzeros {r['nonzeros']:,}, "
        f"stored entries in the release {r['stored_entries_release']:,}"
    )
    print(f"dense fp32 (weights + biases): {r['dense_fp32_bytes']:,} bytes")
    print(f"{'container':32} {'bytes':>10} {'vs release':>10} {'vs dense':>9}")
    print(
        f"{'authors release (.net)':32} {r['release_bytes']:>10,} {1.0:>10.3f} {r['dense_fp32_bytes'] / r['release_bytes']:>8.1f}x"
    )
    for key, size in r["dcz"].items():
        print(
            f"{'.dcz ' + key:32} {size:>10,} {size / r['release_bytes']:>10.3f} {r['dense_fp32_bytes'] / size:>8.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
