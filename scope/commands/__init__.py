"""One module per command group; each exposes ``register(app)``.

Modules here import only typer and the standard library at import time, so ``scope --help``
stays instant; library code is imported inside the command functions.
"""

import scope.help_format  # noqa: F401  (flags without "<bool>" in --help)
from scope.commands import (
    calibrate,
    dataset,
    demo,
    export,
    info,
    led,
    match,
    profiles,
    scan,
    segment,
    train,
)

COMMAND_MODULES = [
    scan,
    calibrate,
    led,
    match,
    dataset,
    segment,
    train,
    export,
    demo,
    profiles,
    info,
]
