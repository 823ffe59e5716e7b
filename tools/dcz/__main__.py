"""`python -m dcz ...` is the `dcz` command."""

import sys

from dcz.cli import main

sys.exit(main())
