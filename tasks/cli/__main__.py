"""``python -m tasks.cli``: the same as the ``nerfsim`` command."""

from tasks.cli import main

raise SystemExit(main())
