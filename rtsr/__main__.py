"""``python -m rtsr``: the command-line interface."""

from rtsr.cli import main

raise SystemExit(main())
