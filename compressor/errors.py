"""The compressor's one error type (the developers' guide: one per package, a ValueError)."""

from __future__ import annotations

from dcz.formats.errors import DczError


class CompressError(DczError):
    """Bad input to the compressor: wrong config, unsupported layer, unreadable data.

    The message is one line and names what is wrong and where (the config key, the layer, the file).
    """
