"""Safe YAML loading within stated limits, and one line per validation error.

Limits on every user file (problems, catalogs, imported configs), so that no input can make
fleetplan read without end, recurse without end or expand without end:

- ``MAX_FILE_BYTES`` (10 MB): larger files (and endless ones such as ``/dev/zero``) are
  refused after reading at most that many bytes plus one;
- ``MAX_DEPTH`` (32): nesting of mappings/lists deeper than this is refused;
- ``MAX_NODES`` (200,000): values counted with anchors/aliases expanded; an "anchor bomb" that
  expands to more is refused while it is walked, before anything validates it.

YAML is parsed with the safe loader only: tags that construct Python objects are errors, and so
is a key written twice in one mapping.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from solver.errors import InputError

M = TypeVar("M", bound=BaseModel)

MAX_FILE_BYTES = 10_000_000
MAX_DEPTH = 32
MAX_NODES = 200_000


class _Loader(yaml.SafeLoader):
    """The safe loader, reading ``1e6``, ``1.5e3`` and ``5e-13`` as numbers, as YAML 1.2 and
    every user does (YAML 1.1, PyYAML's default, reads them as strings: its exponent needs a
    decimal point and a sign)."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _map_without_duplicate_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    """A mapping, refusing a key written twice in it (PyYAML keeps the last silently, so a
    repeated ``pricing:`` or ``traffic:`` would plan on values the user did not mean). Keys merged
    in with ``<<`` may still be overridden, as YAML intends."""
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            seen = first.get(key)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if seen is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen + 1})", key_node.start_mark)
        first[key] = key_node.start_mark.line
    yield from loader.construct_yaml_map(node)


_Loader.add_constructor("tag:yaml.org,2002:map", _map_without_duplicate_keys)

_FastLoader: type | None = None
"""The same loader on libyaml's C parser (about 5x faster on the catalog) where PyYAML has
it; resolvers and constructors are the Python ones above, so documents load identically. Any
error is re-parsed with :class:`_Loader`, so error messages do not depend on it."""
if getattr(yaml, "__with_libyaml__", False):
    class _CLoader(yaml.CSafeLoader):  # type: ignore[name-defined,misc]
        pass

    _CLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
    _CLoader.add_constructor("tag:yaml.org,2002:map", _map_without_duplicate_keys)
    _FastLoader = _CLoader


def read_text(path: Path, kind: str) -> str:
    """A user file's text (at most ``MAX_FILE_BYTES``); a missing, unreadable, oversized, non-UTF-8
    or folder path is an ``InputError`` naming it. ``kind`` names what was expected, for the
    folder message (e.g. "a YAML file")."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InputError("file not found", where=str(path)) from None
    except IsADirectoryError:
        raise InputError(f"is a folder, expected {kind}", where=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", where=str(path)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(f"file is larger than the {MAX_FILE_BYTES // 1_000_000} MB limit", where=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x})", where=str(path)) from None
    if "\x00" in text:
        raise InputError(f"contains a NUL byte (at character {text.index(chr(0))}); not a text file",
                         where=str(path))
    return text


def check_shape(data: Any, where: str) -> None:
    """Refuse data nested deeper than ``MAX_DEPTH`` or with more than ``MAX_NODES`` values
    (aliases counted each time they are used). Iterative: deep input cannot overflow the stack."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise InputError(f"more than {MAX_NODES:,} values (anchors and aliases expanded); "
                             "refused as too large", where=where)
        if depth > MAX_DEPTH:
            raise InputError(f"nested deeper than {MAX_DEPTH} levels", where=where)
        if isinstance(node, dict):
            stack.extend((k, depth + 1) for k in node)
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with the safe loader within the limits above; any failure is an
    ``InputError`` naming the file."""
    text = read_text(path, "a YAML file")
    data: Any = None
    parsed = False
    if _FastLoader is not None:
        try:
            data, parsed = yaml.load(text, Loader=_FastLoader), True  # a CSafeLoader subclass
        except (yaml.YAMLError, RecursionError):
            pass  # re-parsed below for the message
    try:
        if not parsed:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"malformed YAML: {line}{problem}", where=str(path)) from None
    except RecursionError:
        raise InputError(f"nested deeper than {MAX_DEPTH} levels", where=str(path)) from None
    check_shape(data, str(path))
    return data


def field_path(loc: tuple[Any, ...], data: Any = None) -> str:
    """Render a pydantic error location as ``models[0].traffic.peak_rps``.

    Where the list item has an ``id`` (or ``name``), it is shown too: ``models[0:chat]``.
    """
    out = ""
    node = data
    for part in loc:
        if part == "[key]":  # the error is about a mapping key, not its value
            out += " (key)"
            continue
        if isinstance(part, int) and not isinstance(node, dict):
            label = str(part)
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            if isinstance(item, dict):
                key = item.get("id") or item.get("name")
                if isinstance(key, str):
                    label = f"{part}:{_printable(key, 40)}"
            out += f"[{label}]"
            node = item
        else:
            out += f".{_printable(str(part), 60)}" if out else _printable(str(part), 60)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _printable(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters, control characters escaped (one line)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        shown = repr(value)
        return shown if len(shown) <= 40 else None
    return None


def error_lines(exc: ValidationError, data: Any) -> list[str]:
    """Every validation error as ``field: message``, one line each, the way users read them
    (no pydantic type codes or documentation addresses)."""
    out: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        msg = re.sub(r" or instance of \w+", "", msg)  # no internal class names
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        elif err["type"] == "missing":
            msg = "missing required field"
        if "input" in err and err["type"] not in ("missing", "extra_forbidden", "model_type"):
            shown = _shown(err["input"])
            if shown is not None:
                msg += f" (got {_printable(shown, 40)})"
        line = f"{field_path(loc, data)}: {msg}"
        if not loc and re.match(r"^[a-z_]+(\[[^\]]*\])?(\.[a-z_]+(\[[^\]]*\])?)*: ", msg):
            line = msg  # a whole-problem check that names its own field (applications, models)
        if line not in out:
            out.append(line)
    return out


def first_error(exc: ValidationError, data: Any) -> str:
    """The first validation error as ``field: message``."""
    return error_lines(exc, data)[0]


def validate(model: type[M], data: Any, where: str) -> M:
    """Validate ``data`` against ``model``; every error becomes one line of an ``InputError``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(error_lines(exc, data), where=where) from None
    except RecursionError:
        raise InputError(f"nested deeper than {MAX_DEPTH} levels", where=where) from None
