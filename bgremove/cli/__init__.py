"""The command line: the `bgremove` group and its commands, settings (flags > environment >
config file > defaults), progress, reports, exit codes and signal handling.

The only package that knows flags and exit codes. Nothing outside it imports it
(tests/test_layers.py says so): the library raises errors that name keywords, and this package
turns them into flags, messages and exit codes.
"""
