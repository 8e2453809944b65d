from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from common.problems import ApiError
from royalties.reports import report_lines_from_csv, revenue_report_record


class Command(BaseCommand):
    help = (
        "Import a distributor's statement (CSV: line_id, work, amount_minor, currency[, arose_at]) as "
        "revenue reported by the works' manager. Lines already imported are skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--user", required=True, help="username of the works' manager")
        parser.add_argument("--distributor", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user {options['user']!r}")
        try:
            lines = report_lines_from_csv(options["path"].read_bytes())
            result = revenue_report_record(user=user, distributor=options["distributor"], lines=lines)
        except (ApiError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{result.created} lines recorded, {result.duplicates} already known")
