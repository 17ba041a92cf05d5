"""``python -m nerbook`` is the ``nerbook`` command."""

import sys

from nerbook.cli import main

sys.exit(main())
