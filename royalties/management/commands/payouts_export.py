from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from royalties.payouts import manual_waiting, payouts_csv


class Command(BaseCommand):
    help = "Export the manual payouts waiting for the operator as CSV (to stdout, or --output FILE)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", help="write to this file instead of stdout")
        parser.add_argument("--currency", help="only this currency")

    def handle(self, *args: Any, **options: Any) -> None:
        waiting = manual_waiting()
        if options.get("currency"):
            waiting = waiting.filter(currency=options["currency"].upper())
        text = payouts_csv(waiting)
        if options.get("output"):
            Path(options["output"]).write_text(text)
            self.stderr.write(f"{len(text.splitlines()) - 1} payout(s) written to {options['output']}")
        else:
            self.stdout.write(text, ending="")
