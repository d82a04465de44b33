"""``python -m wsa_fast`` is the ``wsa-fast`` command."""

import sys

from .cli import main

sys.exit(main())
