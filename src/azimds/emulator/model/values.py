"""How values written by people become typed values: the one helper for booleans and numbers, and validation.

Profiles are YAML whose scalars stay the strings they are written as (``sku: 7.10`` is ``"7.10"``, an IMDS
value). Where a profile means a boolean, a number or a duration (``strict: false``, ``durationInSeconds: 5``,
``idleRelease: 10m``), the text goes through ``parse_flag``/``parse_number``/``parse_duration`` here and nowhere
else. The control plane speaks JSON, whose types
are kept as they are: the same declared types validate both, and ``lax`` (profiles) is the only difference.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic import BeforeValidator, Field, ValidationInfo

from ...errors import ProfileError

__all__ = ["Duration", "Flag", "Number", "Whole", "imds_string", "nesting_depth", "parse_duration", "parse_flag",
           "parse_number", "validate"]

T = TypeVar("T")

_TRUE = frozenset({"true", "yes", "on"})
_FALSE = frozenset({"false", "no", "off"})


def parse_flag(text: str) -> bool:
    """``true``/``false`` (also YAML 1.1's yes/no/on/off), any case."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"must be true or false, not {text!r}")


def parse_number(text: str) -> float:
    """A finite decimal number."""
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"must be a number, not {text!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, not {text!r}")
    return number


def parse_whole(text: str) -> int:
    number = parse_number(text)
    if number != int(number):
        raise ValueError(f"must be a whole number, not {text!r}")
    return int(number)


_DURATION = re.compile(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*")


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``2m``, ``1h30m`` (hours, minutes, seconds, in that order)."""
    match = _DURATION.fullmatch(text)
    if not match or not any(match.groups()):
        raise ValueError(f"must be seconds or like '10m', '1h30m', '90s', not {text!r}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def imds_string(value: Any) -> Any:
    """IMDS primitives are strings: a hand-written profile's numbers and booleans become them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, not {value}")
        return str(value)
    if value is None:
        return ""
    return value


def _from_text(parse: Any) -> Any:
    def validator(value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and info.context is not None and info.context.get("lax"):
            return parse(value)
        return value
    return BeforeValidator(validator)


#: Declared types of values a profile writes as text and the control plane as JSON.
Flag = Annotated[bool, _from_text(parse_flag)]
Number = Annotated[float, _from_text(parse_number), Field(allow_inf_nan=False)]
Whole = Annotated[int, _from_text(parse_whole)]
Duration = Annotated[float, _from_text(parse_duration), Field(allow_inf_nan=False)]  # seconds


def nesting_depth(text: str) -> int:
    """How deeply a JSON text nests (strings skipped), counted without parsing it: bound a body by it first."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif char in "]}":
            depth -= 1
    return deepest


def validate(adapter: pydantic.TypeAdapter[T], data: Any, source: str, *, lax: bool = False,
             where: str = "") -> T:
    """Validate ``data``; ProfileError naming every problem and its place (prefixed by ``where``)."""
    try:
        return adapter.validate_python(data, strict=True, context={"lax": lax})
    except pydantic.ValidationError as exc:
        raise ProfileError(source, problems(exc, where)) from None


def problems(exc: pydantic.ValidationError, where: str = "") -> list[tuple[str, str]]:
    """pydantic's errors as (place, problem), places written as in the file: ``compute.dataDisks[0].lun``."""
    out = []
    for err in exc.errors(include_url=False):
        loc = [part for part in err["loc"] if not (isinstance(part, str) and part.startswith("function-"))]
        problem = err["msg"]
        if err["type"] == "extra_forbidden":
            problem = "unknown field"
        elif err["type"] == "missing":
            problem = "required field missing"
        elif problem.startswith("Value error, "):
            problem = problem[len("Value error, "):]
        out.append((_place(where, loc), problem))
    return out


def _place(where: str, loc: list[Any]) -> str:
    out = where
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
