"""Error types that the CLI turns into one-line messages and exit codes.

``InputError`` (exit 2) is for anything the user can fix in their input: a file, a flag,
a catalog entry. Everything else that escapes is a bug and is allowed to show a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(ValueError):
    """Bad user input: a one-line message naming the place (file, field) and the problem."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        self.detail = message
        super().__init__(f"{where}: {message}" if where else message)


def closest(name: str, valid: Iterable[str], n: int = 3) -> list[str]:
    """The valid names closest to ``name`` (for "did you mean" hints), best first."""
    valid = sorted(set(valid))
    hits = difflib.get_close_matches(name.lower(), valid, n=n, cutoff=0.5)
    if not hits:
        hits = [v for v in valid if name.lower() in v or v in name.lower()][:n]
    return hits


def unknown_id(kind: str, name: str, valid: Iterable[str]) -> str:
    """Message for an unknown catalog id, with the closest valid ids."""
    valid = list(valid)
    hint = closest(name, valid)
    if hint:
        return f"unknown {kind} {name!r}; closest valid ids: {', '.join(hint)}"
    return f"unknown {kind} {name!r}; valid ids: {', '.join(sorted(valid))}"
