import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog import tracing
from common.problems import ApiError


class Command(BaseCommand):
    help = "Trace a media file: the registered works it matches, with score, confidence and where it matches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            info, matches = tracing.trace(data=path.read_bytes(), user=None)
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from None
        except ApiError as exc:
            raise CommandError(f"{path}: {exc.detail} ({exc.problem_code})") from None
        rows = [
            {
                "work": item.work.pk,
                "title": item.work.title,
                "kind": item.match.kind,
                "score": round(item.match.score, 3),
                "confidence": round(item.match.confidence, 4),
                "region": item.match.region,
                "mirrored": item.match.mirrored,
                "offset_s": item.match.offset_s,
                "time_scale": item.match.time_scale,
            }
            for item in matches
        ]
        if options["json"]:
            self.stdout.write(json.dumps({"file": str(path), "media_type": info.media_type, "matches": rows}))
            return
        if not rows:
            self.stdout.write(f"{path}: no registered work matches")
        for row in rows:
            where = (
                f"offset {row['offset_s']:.1f} s"
                if row["offset_s"] is not None
                else f"region {row['region']}"
            )
            self.stdout.write(
                f"{row['kind']:5} work #{row['work']} “{row['title']}”: confidence {row['confidence']:.3f} "
                f"(score {row['score']}), {where}"
            )
