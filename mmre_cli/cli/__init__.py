"""The ``mmre`` command line: one module per command, each a thin Typer wrapper.

Command modules import only typer and the standard library at import time, so that
``mmre --help`` stays fast and never imports torch; the work is imported inside the command.
"""
