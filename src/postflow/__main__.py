"""Allow ``python -m postflow``."""

from postflow.cli import main

main()
