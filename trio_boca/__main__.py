"""`python -m trio_boca run module:app`: the same as `trio-boca run`."""

import sys

from .cli import main

sys.exit(main())
