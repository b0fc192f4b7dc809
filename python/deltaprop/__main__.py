"""Run the command line, ``deltaprop``, as ``python -m deltaprop``."""

import sys

from .cli import main

sys.exit(main())
