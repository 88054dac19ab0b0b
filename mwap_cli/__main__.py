"""``python -m mwap_cli``: the ``mwap`` command."""

from mwap_cli import main

main()
