"""Render benchmark results as Markdown and keep the benchmark pages' sections in place.

A page under docs/benchmarks/ holds its sections between `<!-- BEGIN name -->` / `<!-- END name -->`
markers. This module rewrites the top matter (everything before the first BEGIN marker) and the
`bench` section only, leaving every other section byte for byte as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tools.bench.bench_artifacts import Artifact
from tools.bench.bench_measure import LoadFigures

EQUAL_ACCURACY_PP = 0.3  # "at equal accuracy" means within 0.3 percentage points
DCZ_FINAL = "dcz.PQH"


@dataclass
class Row:
    artifact: Artifact
    load: LoadFigures


def _num(value: float | None, fmt: str, missing: str = "—") -> str:
    return missing if value is None else format(value, fmt)


def short(value: float | None) -> str:
    """Three significant digits without exponents: 0.0412, 3.88, 71.7, 1,890."""
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def row_cells(row: Row, dense_bytes: int) -> list[str]:
    art, load = row.artifact, row.load
    load_ms = None if load.load_first_s is None else 1000 * load.load_first_s
    acc = _num(load.accuracy, ".2f") if load.error is None else f"n/a ({load.error})"
    return [
        art.label,
        f"{art.nbytes:,}",
        f"{dense_bytes / art.nbytes:.1f}x",
        acc,
        short(art.produce_s),
        short(load_ms),
        _num(load.peak_rss_mib, ",.0f"),
    ]


HEADER = ["row", "bytes", "ratio to dense", "top-1 %", "time to produce s", "load + 1st inference ms", "peak RSS MiB"]


def table(rows: list[Row]) -> str:
    dense = next(r for r in rows if r.artifact.key == "dense").artifact.nbytes
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] + ["--:"] * (len(HEADER) - 1)) + "|"]
    lines += ["| " + " | ".join(row_cells(r, dense)) + " |" for r in rows]
    return "\n".join(lines)


def verdict(rows: list[Row]) -> str:
    """Is .dcz P+Q+H the smallest file among rows of equal accuracy (within 0.3 pp)?"""
    by_key = {r.artifact.key: r for r in rows}
    final, dense = by_key.get(DCZ_FINAL), by_key.get("dense")
    if final is None or final.load.accuracy is None or dense is None or dense.load.accuracy is None:
        return "- Smallest at equal accuracy: not judged (untrained model: no accuracy to hold equal)."
    acc = final.load.accuracy
    drop = dense.load.accuracy - acc
    lines = [
        f"- .dcz P+Q+H top-1 {acc:.2f}% vs dense {dense.load.accuracy:.2f}% "
        f"({-drop:+.2f} pp; {'within' if drop <= EQUAL_ACCURACY_PP else 'OUTSIDE'} {EQUAL_ACCURACY_PP} pp)."
    ]
    rivals = [r for r in rows if not r.artifact.key.startswith("dcz.") and r.load.accuracy is not None]
    equal = [r for r in rivals if r.load.accuracy >= acc - EQUAL_ACCURACY_PP]
    smaller = [r for r in equal if r.artifact.nbytes <= final.artifact.nbytes]
    if not smaller:
        best = min(equal, key=lambda r: r.artifact.nbytes, default=None)
        margin = (
            ""
            if best is None
            else (
                f"; next smallest at equal accuracy: {best.artifact.label}, "
                f"{best.artifact.nbytes / final.artifact.nbytes:.2f}x the bytes"
            )
        )
        lines.append(f"- .dcz P+Q+H is the smallest row at equal accuracy: YES{margin}.")
    else:
        names = ", ".join(f"{r.artifact.label} ({r.artifact.nbytes:,} B, {r.load.accuracy:.2f}%)" for r in smaller)
        lines.append(f"- .dcz P+Q+H is the smallest row at equal accuracy: NO — smaller or equal: {names}.")
    lossy = [r for r in rivals if r not in equal and r.artifact.nbytes < final.artifact.nbytes]
    for r in lossy:
        lines.append(
            f"- {r.artifact.label} is smaller ({r.artifact.nbytes:,} B) but loses "
            f"{acc - r.load.accuracy:.2f} pp against .dcz: not equal accuracy."
        )
    return "\n".join(lines)


# --- benchmark pages ------------------------------------------------------------------------------

_BEGIN = "<!-- BEGIN {} -->"
_END = "<!-- END {} -->"


def replace_section(text: str, name: str, body: str) -> str:
    """`text` with section `name`'s content replaced by `body` (appended at the end if absent)."""
    begin, end = _BEGIN.format(name), _END.format(name)
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip() + ("\n\n" if text.strip() else "") + block + "\n"


def replace_top_matter(text: str, top: str) -> str:
    """`text` with everything before the first BEGIN marker replaced by `top`."""
    first = text.find("<!-- BEGIN ")
    rest = text[first:] if first >= 0 else ""
    return top.rstrip() + "\n\n" + rest


def update_benchmarks(path: Path, top: str, body: str, section: str = "bench") -> None:
    """Rewrite the top matter and our section of a benchmark page; re-read just before writing."""
    text = path.read_text() if path.exists() else ""
    text = replace_section(replace_top_matter(text, top), section, body)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
