"""``python -m oncofed.common.cli``: the same as the ``oncofed`` command."""

from oncofed.common.cli import main

raise SystemExit(main())
