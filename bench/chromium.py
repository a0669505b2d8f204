"""The Chromium that the web benchmark and the browser tests drive: the machine's own
(Debian's `chromium`), launched by Playwright, which downloads none."""

from __future__ import annotations

import os

CHROMIUM_DEFAULT = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
"""Headless, and quiet: no sandbox (containers run it as root), no GPU, and none of the
background traffic (updates, sync, first-run pages) that would disturb a measurement."""


def chromium_path(variable: str) -> str:
    """The browser binary: the path in `variable`, else Debian's."""
    return os.environ.get(variable, CHROMIUM_DEFAULT)
