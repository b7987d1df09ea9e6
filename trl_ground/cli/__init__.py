"""Command-line entry points: one module per command, each with ``main(argv=None) -> int``.

Installed as console scripts (``pyproject.toml``'s ``[project.scripts]``); ``scripts/<name>.py``
runs the same ``main`` from a checkout.
"""
