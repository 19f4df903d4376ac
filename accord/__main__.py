"""``python -m accord``: the same as the ``accord`` command."""

from accord.cli import main

raise SystemExit(main())
