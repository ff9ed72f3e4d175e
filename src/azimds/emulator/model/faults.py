"""What a fault is: a rule that makes matching requests fail the way the real service fails. Declared once.

A rule matches request paths by glob (``/metadata/identity/*``) and does one or more of: answer with a status
(404, 410, 429, 500, 503, …, with Retry-After if asked), wait before answering, or drop the connection
unanswered. It may apply to every matching request, a random share of them, the first N of them, or those
in the first N seconds after the emulator started. The same declaration is the profile's ``azimds.faults``
item, the control plane's body (and its OpenAPI schema) and, written ``PATTERN=SPEC``, the ``--fault`` flag.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...errors import ProfileError
from .values import Flag, Number, Whole, validate

__all__ = ["FaultRule"]


class FaultRule(BaseModel):
    """One fault rule. Needs a status, a latency or drop (status and latency may combine)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True,
                              allow_inf_nan=False, title="Fault")

    path: Annotated[str, Field(pattern=r"^[/*]", max_length=1024,
                               description="glob of request paths, e.g. /metadata/identity/*")] = "*"
    status: Annotated[Whole | None, Field(ge=400, le=599, description="answer with this status")] = None
    latency: Annotated[Number, Field(ge=0, le=3600, description="seconds to wait before answering")] = 0.0
    drop: Annotated[Flag, Field(description="close the connection unanswered")] = False
    retry_after: Annotated[Whole | None, Field(alias="retryAfter", ge=0, le=86400,
                                               description="Retry-After seconds (with a status)")] = None
    probability: Annotated[Number, Field(gt=0, le=1, description="share of matching requests hit")] = 1.0
    first: Annotated[Whole | None, Field(ge=1, le=10**9, description="only the first N matching requests")] = None
    first_seconds: Annotated[Number | None, Field(alias="firstSeconds", gt=0, le=10**9,
                                                  description="only during the first N seconds")] = None

    #: ``--fault`` spec keys: the wire names in kebab case (``retryAfter`` is ``retry-after``).
    SPEC_KEYS: ClassVar[dict[str, str]] = {}

    @model_validator(mode="after")
    def _consistent(self) -> FaultRule:
        if self.status is None and not self.latency and not self.drop:
            raise ValueError("a fault needs status, latency or drop")
        if self.drop and self.status is not None:
            raise ValueError("drop and status exclude each other")
        if self.retry_after is not None and self.status is None:
            raise ValueError("retry-after needs a status")
        return self

    @classmethod
    def from_mapping(cls, mapping: Any, *, lax: bool = False, source: str = "") -> FaultRule:
        """From the profile's or the control plane's mapping (wire names). Raises ProfileError."""
        return validate(_adapter(), mapping, source, lax=lax)

    @classmethod
    def from_spec(cls, text: str, *, source: str = "") -> FaultRule:
        """From ``PATTERN=SPEC`` as the ``--fault`` flag takes it, e.g. ``/metadata/*=status:410,first-seconds:70``.

        SPEC is a comma-separated list of ``status:N``, ``latency:SECONDS``, ``drop``, ``retry-after:SECONDS``,
        ``probability:P``, ``first:N`` and ``first-seconds:SECONDS``. Raises ProfileError saying what is wrong.
        """
        pattern, sep, spec = text.partition("=")
        if not sep or not spec:
            raise ProfileError(source, [("", f"a fault is PATTERN=SPEC, e.g. '/metadata/*=status:500', not {text!r}")])
        mapping: dict[str, Any] = {"path": pattern.strip() or "*"}
        for item in spec.split(","):
            key, colon, value = item.strip().partition(":")
            name = _spec_keys().get(key)
            if name is None or name == "path":
                known = ", ".join(k for k in _spec_keys() if k != "path")
                raise ProfileError(source, [("", f"unknown fault option {key!r}; known: {known}")])
            if name == "drop" and not colon:
                mapping[name] = True
                continue
            mapping[name] = value
        try:
            return validate(_adapter(), mapping, source, lax=True)
        except ProfileError as exc:
            raise ProfileError(source, [("", f"{_spec_name(p.where)}: {p.what}" if p.where else p.what)
                                        for p in exc.problems]) from None

    def to_mapping(self) -> dict[str, Any]:
        """The rule as the control plane shows it and a profile writes it (wire names, defaults left out)."""
        return self.model_dump(by_alias=True, exclude_defaults=True, mode="json") | {"path": self.path}

    def regex(self) -> re.Pattern[str]:
        import fnmatch

        return re.compile(fnmatch.translate(self.path))


def _spec_name(wire: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", wire).lower()


def _spec_keys() -> dict[str, str]:
    if not FaultRule.SPEC_KEYS:
        for name, info in FaultRule.model_fields.items():
            wire = info.alias or name
            FaultRule.SPEC_KEYS[_spec_name(wire)] = wire
    return FaultRule.SPEC_KEYS


_ADAPTER: list[pydantic.TypeAdapter[FaultRule]] = []


def _adapter() -> pydantic.TypeAdapter[FaultRule]:
    if not _ADAPTER:
        _ADAPTER.append(pydantic.TypeAdapter(FaultRule))
    return _ADAPTER[0]
