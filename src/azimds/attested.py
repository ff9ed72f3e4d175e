"""``azimds.attested``: the documented import path of attested-document verification (see ``azimds.client``)."""

from .client import AttestedDocument, verify_attested
from .errors import (
    AttestationError,
    ChainError,
    ExpiredError,
    FormatError,
    NameMismatchError,
    NonceError,
    SignatureError,
)

__all__ = [
    "AttestationError", "AttestedDocument", "ChainError", "ExpiredError", "FormatError", "NameMismatchError",
    "NonceError", "SignatureError", "verify_attested",
]
