"""Every Postgres advisory lock the scheduler takes, named once.

A lock held per name (a queue, a unique key) is keyed `hashtextextended(name, key)`, so the
same name under two locks never collides.
"""

from __future__ import annotations

from enum import IntEnum


class Lock(IntEnum):
    MIGRATIONS = 7261020300
    """Held while migrations run, so replicas that start together migrate once."""
    RELAY = 7261020301
    """Held (for the session) by the one relay that publishes the outbox, in order."""
    UNIQUE_KEY = 7261020302
    """Per unique key: submits sharing a key are recorded one after another."""
    QUEUE = 7261020303
    """Per limited queue: count, choice and release of its tasks happen one at a time."""
