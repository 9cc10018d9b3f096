"""Command groups beyond the default `remove`: one module each, registered at the end of cli.py."""
