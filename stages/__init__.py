"""One module per DVC stage: read inputs and params, call the library, write outputs.

Each module exposes ``run(..., params, stats=None, reporter=None) -> dict`` (the statistics it
also writes as JSON). Stages never print; they report through the reporter the CLI hands them.
"""
