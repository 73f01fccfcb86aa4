"""``python -m collector ...`` is ``inferwatch collect ...``."""

import sys

from collector.cli import main

raise SystemExit(main(sys.argv[1:]))
