"""``python -m tensordb``: the command line."""

from .cli.entry import main

main()
