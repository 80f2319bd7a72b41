"""``python -m tingxie.server [serve options]`` runs the server, as ``tingxie serve`` does."""

import sys

from .cli import main

sys.exit(main())
