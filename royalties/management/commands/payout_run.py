from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.currency import format_minor
from common.problems import ApiError
from royalties.payouts import payout_run


class Command(BaseCommand):
    help = (
        "Make this period's payouts (payable at or above PAYOUT_THRESHOLD_MINOR), send unsent ones on their "
        "rails and confirm chain payouts. Safe to run again at any time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--period", help="e.g. 2026-11 (month), 2026-W47 (week); default: the current one"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = payout_run(period=options.get("period"))
        except ApiError as error:  # a period not in the configured form
            raise CommandError(str(error.detail)) from None
        self.stdout.write(f"{len(result.created)} payout(s) made for {result.period}")
        for payout in result.created:
            amount = format_minor(payout.amount_minor, payout.currency)
            self.stdout.write(f"  {payout.key}: {amount} to user #{payout.user_id} via {payout.rail}")
        self.stdout.write(
            f"submitted {result.submitted}, confirmed {result.confirmed}, failed {result.failed}, "
            f"waiting to retry {result.waiting}, manual {result.manual}"
        )
