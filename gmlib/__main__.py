"""``python -m gmlib ...``: see gmlib.cli."""

from gmlib.cli import main

main()
