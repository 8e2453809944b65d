from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from common import clock
from common.problems import ApiError
from royalties.payouts import period_check, period_of
from royalties.reconcile import RAILS, differences_open, reconcile, reconcile_all


class Command(BaseCommand):
    help = (
        "Compare the ledger with the rails (Stripe balance transactions, chain receipts and logs) for a "
        "period, store the differences, and list the unresolved ones. Exits 1 if any is unresolved."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", help="default: the current period")
        parser.add_argument("--rail", choices=RAILS, help="default: every configured rail")
        parser.add_argument("--list", action="store_true", help="only list unresolved differences")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["list"]:
            try:
                period = period_check(options["period"], any_kind=True) if options.get("period") else None
            except ApiError as error:
                raise CommandError(str(error.detail)) from None
            period = period or period_of(clock.now())
            rail = options.get("rail")
            runs = [reconcile(period=period, rail=rail)] if rail else reconcile_all(period=period)
            for run in runs:
                status = f"error: {run.error}" if run.error else f"{run.differences_found} difference(s)"
                self.stdout.write(
                    f"{run.rail} {run.period}: {run.ledger_records} ledger record(s), "
                    f"{run.rail_records} rail record(s), {status}"
                )
        open_rows = list(differences_open().order_by("created_at", "id"))
        for row in open_rows:
            self.stdout.write(
                f"  #{row.pk} {row.rail} {row.kind} {row.record_kind} {row.reference} {row.external_id} "
                f"ledger={row.ledger_amount_minor} rail={row.rail_amount_minor} {row.currency} {row.detail}"
            )
        if open_rows:
            self.stdout.write(f"{len(open_rows)} unresolved difference(s)")
            raise SystemExit(1)
