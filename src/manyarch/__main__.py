"""``python -m manyarch``."""

from manyarch.cli.main import main

raise SystemExit(main())
