"""Sub-commands of `bgremove`, one module per command group (registered at the bottom of cli.py)."""
