"""The quota rule, its one definition: a grant's use is counted only while the grant is active and, when
its offer has a quota, only while fewer accesses than the quota were counted. Both access paths use it:
the general path's conditional UPDATE (count_use_sql) and the one-statement charge, which counts the use
on the same condition (usable_sql) before it holds the price."""

from __future__ import annotations

from typing import Any

from catalog.models import Grant, GrantStatus

GRANTS = Grant._meta.db_table


def usable_sql(*, with_quota: bool, alias: str = "") -> str:
    """The condition on a grant row (by id) under which one more use may be counted, `with_quota` when
    its offer has a quota (the columns qualified by `alias` if given); its parameters are usable_params().
    Checked on the row itself, so an UPDATE re-checks it under the row's lock: concurrent uses
    never count past the quota."""
    column = f"{alias}." if alias else ""
    within = f" AND {column}accesses_used < %s" if with_quota else ""
    return f"{column}id = %s AND {column}status = '{GrantStatus.ACTIVE.value}'{within}"


def usable_params(*, grant_id: int, quota: int | None) -> list[Any]:
    """The parameters of usable_sql(quota), in order."""
    return [grant_id] if quota is None else [grant_id, quota]


def count_use_sql(*, with_quota: bool) -> str:
    """Count one use of a grant when usable_sql allows it (no row changed when it does not); its
    parameters are usable_params()."""
    condition = usable_sql(with_quota=with_quota)
    return f"UPDATE {GRANTS} SET accesses_used = accesses_used + 1 WHERE {condition}"  # noqa: S608
