"""``python -m eps_resnet.cli``: the same as the ``eps-resnet`` command."""
import sys

from . import main

sys.exit(main())
