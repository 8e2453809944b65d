from typing import Any

from django.core.management.base import BaseCommand

from royalties.ledger import ledger_check


class Command(BaseCommand):
    help = (
        "Recompute every account's balance and hold from the entries and the unsettled revenue, and check "
        "that each transaction sums to zero. Exits with status 1 on any difference."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        problems = ledger_check()
        for key, (cached, derived) in sorted(problems.balance_differences.items()):
            self.stdout.write(f"balance differs: {key} cached {cached}, entries say {derived}")
        for key, (cached, derived) in sorted(problems.held_differences.items()):
            self.stdout.write(f"hold differs: {key} cached {cached}, unsettled revenue says {derived}")
        for transaction_id, currency, total in problems.unbalanced:
            self.stdout.write(f"transaction #{transaction_id} sums to {total} {currency}")
        for key in problems.negative:
            self.stdout.write(f"negative: {key}")
        if problems.currency_mismatches:
            self.stdout.write(
                f"{problems.currency_mismatches} entries in another currency than their account"
            )
        if not problems.clean:
            raise SystemExit(1)
        self.stdout.write("ledger consistent")
