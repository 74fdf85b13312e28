"""One module per command group; each exposes ``register(app)``.

Modules here import only typer and the standard library at import time, so ``scope --help``
stays instant; library code is imported inside the command functions.
"""

from scope.commands import info, led, profiles, scan

COMMAND_MODULES = [scan, led, profiles, info]
