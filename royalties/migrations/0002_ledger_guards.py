"""Database guards for the ledger.

PostgreSQL: entries and journal transactions refuse UPDATE and DELETE, and a deferred constraint trigger
checks at commit that every journal transaction's entries sum to zero per currency. The check runs once
per transaction (a transaction-local setting remembers the highest entry id already covered), so a
settlement of thousands of entries costs one sum, not one per entry.

SQLite: entries and journal transactions refuse UPDATE (DELETE stays possible because the test runner
empties tables with DELETE); the service checks the balance before inserting.
"""

from django.db import migrations

POSTGRES_FORWARD = """
CREATE FUNCTION royalties_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER royalties_entry_append_only BEFORE UPDATE OR DELETE ON royalties_entry
    FOR EACH ROW EXECUTE FUNCTION royalties_refuse_change();
CREATE TRIGGER royalties_journal_append_only BEFORE UPDATE OR DELETE ON royalties_journaltransaction
    FOR EACH ROW EXECUTE FUNCTION royalties_refuse_change();

CREATE FUNCTION royalties_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    covered text := current_setting('royalties.balanced_upto', true);
    unbalanced record;
    highest bigint;
BEGIN
    IF covered IS NOT NULL AND covered <> ''
       AND split_part(covered, ':', 1)::bigint = NEW.transaction_id
       AND NEW.id <= split_part(covered, ':', 2)::bigint THEN
        RETURN NULL;
    END IF;
    SELECT currency, SUM(amount_minor) AS total INTO unbalanced
        FROM royalties_entry WHERE transaction_id = NEW.transaction_id
        GROUP BY currency HAVING SUM(amount_minor) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal transaction % does not sum to zero: % %',
            NEW.transaction_id, unbalanced.total, unbalanced.currency
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT MAX(id) INTO highest FROM royalties_entry WHERE transaction_id = NEW.transaction_id;
    PERFORM set_config('royalties.balanced_upto', NEW.transaction_id || ':' || highest, true);
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER royalties_entry_balanced AFTER INSERT ON royalties_entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION royalties_check_balanced();
"""

POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS royalties_entry_balanced ON royalties_entry;
DROP TRIGGER IF EXISTS royalties_entry_append_only ON royalties_entry;
DROP TRIGGER IF EXISTS royalties_journal_append_only ON royalties_journaltransaction;
DROP FUNCTION IF EXISTS royalties_check_balanced();
DROP FUNCTION IF EXISTS royalties_refuse_change();
"""

SQLITE_FORWARD = [
    """CREATE TRIGGER royalties_entry_no_update BEFORE UPDATE ON royalties_entry
       BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE on royalties_entry refused'); END""",
    """CREATE TRIGGER royalties_journal_no_update BEFORE UPDATE ON royalties_journaltransaction
       BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE on royalties_journaltransaction refused'); END""",
]

SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS royalties_entry_no_update",
    "DROP TRIGGER IF EXISTS royalties_journal_no_update",
]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("royalties", "0001_initial")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
