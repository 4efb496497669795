"""Safe YAML loading and one-line messages for validation errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from solver.errors import InputError

M = TypeVar("M", bound=BaseModel)


def read_text(path: Path, kind: str) -> str:
    """A user file's text; a missing, unreadable or folder path is an ``InputError`` naming it.

    ``kind`` names what was expected, for the folder message (e.g. "a YAML file").
    """
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", where=str(path)) from None
    except IsADirectoryError:
        raise InputError(f"is a folder, expected {kind}", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", where=str(path)) from None


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with the safe loader; any failure is an ``InputError`` naming the file."""
    text = read_text(path, "a YAML file")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"malformed YAML: {line}{problem}", where=str(path)) from None


def field_path(loc: tuple[Any, ...], data: Any = None) -> str:
    """Render a pydantic error location as ``models[0].traffic.peak_rps``.

    Where the list item has an ``id`` (or ``name``), it is shown too: ``models[0:chat]``.
    """
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            label = str(part)
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            if isinstance(item, dict):
                key = item.get("id") or item.get("name")
                if isinstance(key, str):
                    label = f"{part}:{key}"
            out += f"[{label}]"
            node = item
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def first_error(exc: ValidationError, data: Any) -> str:
    """The first validation error as ``field: message``, the way users read it."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling)"
    elif err["type"] == "missing":
        msg = "missing required field"
    if "input" in err and err["type"] not in ("missing", "extra_forbidden", "model_type"):
        shown = repr(err["input"])
        if len(shown) <= 40:
            msg += f" (got {shown})"
    more = len(exc.errors()) - 1
    suffix = f" [+{more} more error{'s' if more > 1 else ''}]" if more else ""
    return f"{field_path(loc, data)}: {msg}{suffix}"


def validate(model: type[M], data: Any, where: str) -> M:
    """Validate ``data`` against ``model``; errors become one ``InputError`` line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(first_error(exc, data), where=where) from None
