"""The client side: reads IMDS on a VM (or an emulator) as Microsoft asks clients to. Standard library only.

``Client`` reads metadata, tags, tokens, attested documents and scheduled events with Microsoft's retry rules;
``verify_attested`` checks an attested document; ``capture`` and ``redact`` turn a VM into an emulator
profile (``azimds dump``); ``run_probes``, ``conformance_report`` and ``compare_report`` are ``azimds
conformance``. Reading a tag::

    from azimds.client import Client
    Client().tags()["tag_key"]
"""

from __future__ import annotations

from ..azure import parse_tags
from ..errors import ImdsError, ImdsUnavailable, NotFound
from ._client import (
    ATTESTED_API_VERSION,
    DEFAULT_API_VERSION,
    DEFAULT_DEADLINE,
    DEFAULT_ENDPOINT,
    DEFAULT_TIMEOUT,
    ENDPOINT_ENV,
    FIRST_EVENTS_TIMEOUT,
    IDENTITY_API_VERSION,
    Client,
    resolve_endpoint,
    tags_of,
    touches,
)
from ._retry import PROCESS_LIMITER, Backoff, TokenBucket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ATTESTED_API_VERSION", "DEFAULT_API_VERSION", "DEFAULT_DEADLINE", "DEFAULT_ENDPOINT", "DEFAULT_TIMEOUT",
    "ENDPOINT_ENV", "FIRST_EVENTS_TIMEOUT", "IDENTITY_API_VERSION", "PROCESS_LIMITER", "ZERO_GUID", "Backoff",
    "Certificate", "Client", "ImdsError", "ImdsUnavailable", "NotFound", "TokenBucket", "capture", "compare_report",
    "conformance_report", "load_report", "parse_tags", "probe_table", "redact", "report_probes", "resolve_endpoint",
    "run_probes", "tags_of", "touches", "verify_attested",
]


_LAZY = {"verify_attested": "_attested", "AttestedDocument": "_attested", "Certificate": "_x509",
         "capture": "_capture", "redact": "_capture", "ZERO_GUID": "_capture",
         **dict.fromkeys(("compare_report", "conformance_report", "load_report", "probe_table", "report_probes",
                          "run_probes"), "_conformance")}


def __getattr__(name: str) -> Any:
    # Imported on first use: most callers never verify, capture or probe, and ``azimds tags`` must start fast.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'azimds.client' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
