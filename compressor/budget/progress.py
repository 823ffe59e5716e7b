"""A progress bar with an ETA over a whole calibrated search (tqdm), or stage lines without one.

Used by the ONNX search (budget.onnx_search) and the PyTorch --max-loss search (budget.loss_target):
a step is one unit of work (a layer sized, a candidate or allocation measured, a fine-tune weighted
by its cost); the total is re-estimated once the work left is known, so the ETA covers the search
to its end. Shown only on a terminal unless asked (`enabled`), never with --no-progress.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class SearchProgress:
    """A bar with an ETA over the whole search on a terminal (tqdm); stage lines otherwise."""

    def __init__(self, total: int, say: Callable[[str], None], enabled: bool | None):
        self.say, self.bar = say, None
        if enabled if enabled is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=sys.stderr, unit="step", leave=False)

    def stage(self, text: str) -> None:
        if self.bar is None:
            self.say(text)
        else:
            self.bar.set_description(text[:60])

    def remaining(self, steps: int) -> None:
        """Re-estimate the total once the work left is known (for the ETA)."""
        if self.bar is not None:
            self.bar.total = self.bar.n + steps
            self.bar.refresh()

    def step(self, n: int = 1) -> None:
        if self.bar is not None:
            if self.bar.n + n > self.bar.total:
                self.bar.total = self.bar.n + n
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.n = self.bar.total
            self.bar.close()
