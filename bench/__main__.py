"""``python -m bench``: see ``bench.cli``."""

from .cli import main

raise SystemExit(main())
