"""``python -m tafa.cli``: the ``tafa`` command."""

import sys

from . import main

sys.exit(main())
