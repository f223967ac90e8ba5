"""Sub-commands of the ``nimosef`` CLI; each module has ``register(subparsers)``."""
