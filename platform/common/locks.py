"""Locks that serialise a whole kind of write for the rest of the database transaction.

On PostgreSQL each is a transaction-scoped advisory lock (released at commit or rollback, never left
behind by a crash). Readers that must see every write of a kind "up to now" take it exclusively; the
writers take it shared, so writers never wait for each other, only for such a reader. On SQLite every
write transaction is IMMEDIATE and writers run one at a time (common.sqlite), which already gives the
same order, so there is nothing to take.
"""

from __future__ import annotations

from enum import IntEnum

from django.db import transaction

# The first key of every advisory lock taken here: the letters "tr", so that no other user of the
# database's advisory locks collides with ours.
_NAMESPACE = 0x7472


class Serialised(IntEnum):
    LEDGER_WRITES = 1  # journal transactions (shared) against statement cuts (exclusive)
    LINEAGE = 2  # parent links: one cycle check at a time


def hold(lock: Serialised, *, shared: bool = False) -> None:
    """Take `lock` until the current database transaction ends (call inside transaction.atomic)."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError(f"{lock.name} is held for a transaction: take it inside transaction.atomic")
    if connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, %s)", [_NAMESPACE, int(lock)])
