"""The one exception type that reaches a user: a clear sentence, no traceback."""

from __future__ import annotations


class ParcelguardError(Exception):
    """Bad input or environment the user can fix; the CLI prints ``str(exc)`` and exits 2."""


def missing_extra(module: str, extra: str) -> ParcelguardError:
    return ParcelguardError(
        f"{module} is not installed; install it with: pip install 'parcelguard[{extra}]'"
    )
