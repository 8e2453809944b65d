from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from demo.story import run


class Command(BaseCommand):
    help = "Load the demo story on real media (creators, works, split sheets, offers, a derivative)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--samples", type=Path, default=settings.VAR_DIR / "samples", help="media cache")

    def handle(self, *args: Any, **options: Any) -> None:
        run(say=self.stdout.write, samples_dir=options["samples"])
        self.stdout.write(self.style.SUCCESS("Demo ready."))
