"""PostgreSQL: one function counts an access against its grant and holds the price on the vendor's prepaid
balance, both or neither, so the access call can charge in a single statement (see access.services)."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION access_count_and_hold(p_grant bigint, p_quota bigint, p_payer text, p_amount bigint)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    payer bigint;
BEGIN
    -- The grant is locked first and the balance second, the order the general path locks them in.
    UPDATE catalog_grant SET accesses_used = accesses_used + 1
     WHERE id = p_grant AND status = 'active' AND (p_quota IS NULL OR accesses_used < p_quota);
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    UPDATE royalties_ledgeraccount SET held_minor = held_minor + p_amount
     WHERE key = p_payer AND balance_minor - held_minor >= p_amount
    RETURNING id INTO payer;
    IF payer IS NULL THEN
        -- Undo this call's own count; the row is still locked by this transaction, so the count is exact.
        UPDATE catalog_grant SET accesses_used = accesses_used - 1 WHERE id = p_grant;
        RETURN 0;
    END IF;
    RETURN payer;
END
$$;
"""
DROP = "DROP FUNCTION IF EXISTS access_count_and_hold(bigint, bigint, text, bigint);"


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0001_initial"),
        ("catalog", "0003_output_claim_subject_output"),
        ("royalties", "0006_payout_schedules"),
    ]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP))]
