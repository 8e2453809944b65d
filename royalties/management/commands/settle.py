from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from royalties.settlement import SETTLEMENT_CHUNK, revenue_settle


class Command(BaseCommand):
    help = "Settle unsettled revenue into journal transactions (safe to run at any time, and concurrently)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk-size", type=int, default=SETTLEMENT_CHUNK)

    def handle(self, *args: Any, **options: Any) -> None:
        result = revenue_settle(chunk_size=options["chunk_size"])
        self.stdout.write(f"settled {result.items} revenue items in {result.transactions} transactions")
