"""The ledger's guards that live in the database, the same on both backends (docs/royalties.md).

- entries and journal transactions are never updated or deleted;
- a journal transaction's entries sum to zero per currency when its database transaction commits
  (PostgreSQL: a deferred constraint trigger, migration 0002; SQLite, which has no deferred constraints:
  a trigger reports each entry's transaction and the connection checks their sums before it commits,
  common.sqlite.register_commit_check; an entry written outside a transaction is refused outright);
- an entry's currency is its account's, and an account's currency never changes.

SQLite drops a table's triggers when a migration rebuilds the table, so RoyaltiesConfig puts these back
after every migrate (CREATE ... IF NOT EXISTS).
"""

from __future__ import annotations

from typing import Any

JOURNAL = "journal"  # the kind under which SQLite's triggers report written journal transactions


def _refuse(operation: str, table: str) -> str:
    return (
        f"CREATE TRIGGER IF NOT EXISTS royalties_{table}_no_{operation.lower()} BEFORE {operation} ON "
        f"royalties_{table} BEGIN SELECT RAISE(ABORT, "
        f"'the ledger is append-only: {operation} on royalties_{table} refused'); END"
    )


SQLITE = [
    *(_refuse(op, table) for op in ("UPDATE", "DELETE") for table in ("entry", "journaltransaction")),
    """CREATE TRIGGER IF NOT EXISTS royalties_entry_currency BEFORE INSERT ON royalties_entry
       WHEN NEW.currency IS NOT (SELECT currency FROM royalties_ledgeraccount WHERE id = NEW.account_id)
       BEGIN SELECT RAISE(ABORT, 'an entry''s currency must be its account''s currency'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS royalties_entry_balanced AFTER INSERT ON royalties_entry
       BEGIN SELECT RAISE(ABORT, 'journal entries are written inside a transaction (sums checked at commit)')
       WHERE NOT tribute_written('{JOURNAL}', NEW.transaction_id); END""",
    """CREATE TRIGGER IF NOT EXISTS royalties_account_currency_fixed
       BEFORE UPDATE OF currency ON royalties_ledgeraccount WHEN NEW.currency IS NOT OLD.currency
       BEGIN SELECT RAISE(ABORT, 'a ledger account''s currency never changes'); END""",
]


def sqlite_trigger_names() -> list[str]:
    """The names of the triggers in SQLITE, for a migration that must lift them while it rebuilds a table."""
    return [statement.split("IF NOT EXISTS ", 1)[1].split(None, 1)[0] for statement in SQLITE]


def sqlite_guards_lift(apps: Any, schema_editor: Any) -> None:
    """A migration step: SQLite rebuilds a table to change its CHECK constraints, which drops the table's
    own triggers and fails on another table's trigger naming it, so the guards are lifted for the rebuild
    (and made again by `sqlite_guards_restore` at the migration's end)."""
    if schema_editor.connection.vendor == "sqlite":
        for name in sqlite_trigger_names():
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")


def sqlite_guards_restore(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE:
            schema_editor.execute(statement)


# The triggers of migration 0002 that SQLite knew before these (named differently): dropped, as the
# statements above replace them.
SQLITE_REPLACED = ["royalties_entry_no_update", "royalties_journal_no_update"]

POSTGRESQL = """
CREATE FUNCTION royalties_entry_currency_matches() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.currency IS DISTINCT FROM (SELECT currency FROM royalties_ledgeraccount WHERE id = NEW.account_id)
    THEN
        RAISE EXCEPTION 'an entry''s currency must be its account''s currency (% on account %)',
            NEW.currency, NEW.account_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER royalties_entry_currency BEFORE INSERT ON royalties_entry
    FOR EACH ROW EXECUTE FUNCTION royalties_entry_currency_matches();

CREATE FUNCTION royalties_account_currency_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a ledger account''s currency never changes' USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER royalties_account_currency_fixed BEFORE UPDATE OF currency ON royalties_ledgeraccount
    FOR EACH ROW WHEN (OLD.currency IS DISTINCT FROM NEW.currency)
    EXECUTE FUNCTION royalties_account_currency_fixed();
"""

POSTGRESQL_BACKWARD = """
DROP TRIGGER IF EXISTS royalties_entry_currency ON royalties_entry;
DROP TRIGGER IF EXISTS royalties_account_currency_fixed ON royalties_ledgeraccount;
DROP FUNCTION IF EXISTS royalties_entry_currency_matches();
DROP FUNCTION IF EXISTS royalties_account_currency_fixed();
"""


def journal_unbalanced(cursor: Any, transaction_ids: list[int]) -> str | None:
    """SQLite's commit check: the first written journal transaction that does not sum to zero."""
    placeholders = ", ".join("?" for _ in transaction_ids)
    cursor.execute(
        "SELECT transaction_id, currency, SUM(amount_minor) FROM royalties_entry "  # noqa: S608 (placeholders)
        f"WHERE transaction_id IN ({placeholders}) GROUP BY transaction_id, currency "
        "HAVING SUM(amount_minor) <> 0 LIMIT 1",
        transaction_ids,
    )
    row = cursor.fetchone()
    if row is None:
        return None
    return f"journal transaction {row[0]} does not sum to zero: {row[2]} {row[1]}"
