"""Durations: one spelling everywhere a person writes a length of time.

Flow specs (YAML and JSON), the SDK, the CLI (`weir prune --older-than`) and the services'
settings all read durations here: a number of seconds (`90`, `2.5`) or a number with a
unit (`90s`, `10m`, `2h`, `1d`).
"""

from __future__ import annotations

import math

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*[smhd]?\s*$"
"""The strings `parse_duration` accepts, for the JSON Schema (numbers are accepted too)."""
EXAMPLES = "a number of seconds or a string like 90s, 10m, 2h, 1d"


def parse_duration(raw: str | float) -> float:
    """Seconds in `3600`, `90s`, `15m`, `12h` or `30d` (or a number of seconds)."""
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a duration: give {EXAMPLES}")
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        text = raw.strip()
        unit = text[-1] if text and text[-1] in UNITS else "s"
        number = text[:-1] if text and text[-1] in UNITS else text
        try:
            value = float(number) * UNITS[unit]
        except ValueError:
            raise ValueError(f"{raw!r} is not a duration: give {EXAMPLES}") from None
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a duration: give {EXAMPLES}")
    if value < 0:
        raise ValueError(f"{raw!r} must not be negative")
    return value
