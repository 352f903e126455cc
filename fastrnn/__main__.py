"""``python -m fastrnn``: see fastrnn.cli."""
import sys

from fastrnn.cli import main

sys.exit(main())
