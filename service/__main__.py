"""``python -m service``: see ``service.cli.commands``."""

import sys

from service.cli.commands import main

sys.exit(main())
