"""``python -m tollgate`` runs the CLI."""

from tollgate.cli import main

raise SystemExit(main())
