"""The other engineers' speed figures (k-means, Huffman decode, inference), re-measured in the same run.

Each tool is run as its owner wrote it, in a fresh single-threaded process, with arguments chosen
to keep the whole benchmark within a reasonable time on 2 cores; its Markdown output is embedded
verbatim under the exact command. A tool that is absent or fails is reported as such, not hidden.
Their own pages under docs/benchmarks/ keep their fuller runs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from tools.bench.bench_measure import ROOT, single_thread_env


@dataclass(frozen=True)
class Tool:
    title: str
    module: str  # run as `python -m module` from the checkout
    args: tuple[str, ...]
    timeout_s: float = 600


TOOLS = (
    Tool(
        "k-means: exact 1-D Lloyd vs scikit-learn KMeans",
        "tools.bench.bench_kmeans",
        (
            "--sizes",
            "1000000",
            "10000000",
            "--ks",
            "32",
            "--inits",
            "linear",
            "--repeats",
            "3",
            "--sklearn-repeats",
            "1",
        ),
    ),
    Tool(
        "k-means at k = 256 (8-bit codebooks)",
        "tools.bench.bench_kmeans",
        ("--sizes", "1000000", "--ks", "256", "--inits", "linear", "--repeats", "3", "--sklearn-repeats", "1"),
    ),
    Tool("Huffman / stream decode throughput", "tools.bench.bench_formats", ("--repeat", "3")),
    # its per-model part (ORT from .dcz vs dense ONNX) overlaps the comparison tables above: fc + rss only
    Tool(
        "Inference: NumPy dense vs sparse FC, peak RSS of a 100M-parameter load",
        "tools.bench.bench_runtime",
        ("--parts", "fc", "rss"),
        timeout_s=900,
    ),
)


def demote_headings(text: str, levels: int = 3) -> str:
    """Push a tool's own Markdown headings below ours (its '## Runtime' becomes '##### Runtime')."""
    return "\n".join("#" * levels + line if line.startswith("#") else line for line in text.splitlines())


def run_tool(tool: Tool) -> str:
    """One tool's Markdown block: command, wall time, its output (or why there is none)."""
    path = ROOT / (tool.module.replace(".", "/") + ".py")
    command = " ".join(["python", "-m", tool.module, *tool.args])
    head = [f"#### {tool.title}", "", f"Command: `{command}`", ""]
    if not path.exists():
        return "\n".join(head + [f"Not run: {tool.module} is not in the tree yet.", ""])
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", tool.module, *tool.args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=single_thread_env(),
            timeout=tool.timeout_s,
        )
    except subprocess.TimeoutExpired:
        return "\n".join(head + [f"Not finished within {tool.timeout_s:.0f} s.", ""])
    seconds = time.perf_counter() - start
    output = demote_headings(done.stdout.strip())
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        output += f"\n\n(exit code {done.returncode}: {last})"
    return "\n".join(head + [output, "", f"_{seconds:.0f} s wall._", ""])


def markdown(tools: tuple[Tool, ...] = TOOLS) -> str:
    blocks = ["### Figures gathered from the other bench tools (same run)", ""]
    blocks += [run_tool(tool) for tool in tools]
    return "\n".join(blocks)
