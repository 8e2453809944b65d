"""PostgreSQL whose per-request connection health check costs no round trip.

With CONN_HEALTH_CHECKS, Django checks a reused connection at the start of each request by running
`SELECT 1`: on the metered access call that doubled the round trips. An idle connection has nothing to
read, so here the check first asks the kernel whether the server has sent anything (a session being
terminated by a restart or an administrator sends an error and closes the socket). Only then does it run
the query, which decides.
"""

from __future__ import annotations

import select
from typing import Any

from django.db.backends.postgresql import base, operations
from psycopg import pq


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor: Any, sql: str, params: Any) -> str:
        # A statement from common.rows.prepared_cursor is bound on the server: it is logged as written.
        return super().last_executed_query(cursor, sql, params) or sql


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if connection.info.transaction_status != pq.TransactionStatus.IDLE:
            return super().is_usable()
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable or super().is_usable()
