"""``python -m bot.cli``, as before the CLI became a package (``python -m bot`` too)."""

import sys

from bot.cli import main

sys.exit(main())
