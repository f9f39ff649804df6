"""``python -m recplug`` (also what ``torchrun -m recplug`` runs)."""

import sys

from .cli import main

sys.exit(main())
