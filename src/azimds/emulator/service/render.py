"""Tree to bytes: version gating, route walking, and the JSON and text forms the real service writes.

Pure functions over plain dicts, lists and strings; the endpoints cache what they produce.
"""

from __future__ import annotations

import json
from typing import Any

from ..model import catalog
from .choices import JSON_ENSURE_ASCII

__all__ = ["NotFound", "gate", "is_leaf", "to_json", "to_text", "walk"]


class NotFound(LookupError):
    """A route names a key or index the document does not have."""


def gate(value: Any, node: catalog.Node, version: str) -> Any:
    """Copy of ``value`` without the fields introduced after ``version``."""
    children = node.children
    if children is None:
        return value
    if "*" in children:
        item = children["*"]
        return [gate(element, item, version) for element in value]
    out = {}
    for key, child_value in value.items():
        child = children[key]
        if child.since <= version:
            out[key] = gate(child_value, child, version)
    return out


def walk(value: Any, keys: list[str], *, create: bool = False) -> Any:
    """Follow object keys and array indexes (canonical decimal, 0-based) down the document; with ``create``,
    missing object members are made (as empty objects) on the way."""
    for key in keys:
        if isinstance(value, dict):
            if key not in value:
                if not create:
                    raise NotFound(key)
                value[key] = {}
            value = value[key]
        elif isinstance(value, list):
            value = value[index(key, len(value))]
        else:
            raise NotFound(key)
    return value


def index(key: str, length: int) -> int:
    """An array index as a route writes it: canonical decimal, below ``length``; NotFound otherwise."""
    if not key.isdigit() or (len(key) > 1 and key[0] == "0") or int(key) >= length:
        raise NotFound(key)
    return int(key)


def is_leaf(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def to_json(value: Any, *, sort_keys: bool = True) -> bytes:
    """Compact JSON, keys sorted at every level (unless told to keep their order), UTF-8, no trailing newline."""
    return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys,
                      ensure_ascii=JSON_ENSURE_ASCII).encode("utf-8")


def to_text(value: Any) -> bytes:
    """``format=text``: a leaf as its raw value; an object's keys (``/`` after containers), sorted; an
    array's indexes (``/`` after containers); one per line, no trailing newline."""
    if isinstance(value, dict):
        lines = [f"{key}/" if not is_leaf(value[key]) else key for key in sorted(value)]
    elif isinstance(value, list):
        lines = [f"{index}/" if not is_leaf(item) else str(index) for index, item in enumerate(value)]
    else:
        return str(value).encode("utf-8")
    return "\n".join(lines).encode("utf-8")
