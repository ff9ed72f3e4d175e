"""The PostgreSQL engine of the store (``--state postgresql://…``): one world shared by nodes on many machines.

Being written: see ``engine.Store`` for the interface it implements.
"""

from __future__ import annotations

from .engine import Store

__all__ = ["PostgresStore"]


class PostgresStore(Store):
    def __init__(self, url: str) -> None:
        raise NotImplementedError("the PostgreSQL engine is being written")
