from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.problems import ApiError
from royalties.models import Payout
from royalties.payouts import manual_mark_failed, manual_mark_paid


class Command(BaseCommand):
    help = "Mark a manual payout paid (with the bank's reference) or failed (money back to the payee)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", help="the payout key (first column of payouts_export)")
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--paid", metavar="REFERENCE", help="the payment's reference")
        group.add_argument("--failed", metavar="REASON", help="why it could not be paid")

    def handle(self, *args: Any, **options: Any) -> None:
        payout = Payout.objects.filter(key=options["key"]).first()
        if payout is None:
            raise CommandError(f"no payout has the key {options['key']!r}")
        try:
            if options.get("paid") is not None:
                payout = manual_mark_paid(payout=payout, reference=options["paid"])
            else:
                payout = manual_mark_failed(payout=payout, reason=options["failed"])
        except ApiError as error:
            raise CommandError(str(error.detail)) from None
        self.stdout.write(f"{payout.key}: {payout.status}")
