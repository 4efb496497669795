"""Error types that the CLI turns into one-line messages and exit codes.

``InputError`` (exit 2) is for anything the user can fix in their input: a file, a flag,
a catalog entry. It carries one or more problems, each printed on a line of its own.
Anything else that escapes a command is a bug: the CLI prints one line and the path of a
file holding the full traceback (exit 3), never the traceback itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class InputError(ValueError):
    """Bad user input: one line per problem, each naming the place (file, field) and the problem."""

    def __init__(self, message: str | Sequence[str], *, where: str | None = None) -> None:
        self.where = where
        msgs = [message] if isinstance(message, str) else list(message)
        self.details = tuple(" ".join(m.split()) for m in msgs) or ("bad input",)
        self.detail = self.details[0]
        super().__init__("\n".join(self.lines))

    @property
    def lines(self) -> tuple[str, ...]:
        """Every problem as one line, prefixed with the place when there is one."""
        return tuple(f"{self.where}: {m}" if self.where else m for m in self.details)


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
