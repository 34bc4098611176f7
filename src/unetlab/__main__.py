"""``python -m unetlab`` (also what ``torchrun -m unetlab train`` runs)."""

import sys

from .cli import main

sys.exit(main())
