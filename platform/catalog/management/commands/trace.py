import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog import tracing
from common.problems import ApiError


class Command(BaseCommand):
    help = (
        "Trace a media or text file (or '-' for text on standard input): the registered works it matches, "
        "with score, confidence and where it matches (for text, the passages on both sides)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            content = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
            info, matches = tracing.trace(data=content, user=None)
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from None
        except ApiError as exc:
            raise CommandError(f"{path}: {exc.detail} ({exc.problem_code})") from None
        rows: list[dict[str, Any]] = [
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
                "overlap": item.match.overlap,
                "passages": [vars(pair) for pair in item.passages],
            }
            for item in matches
        ]
        manifest = tracing.manifest_of(data=content, info=info)
        if options["json"]:
            document = {
                "file": str(path),
                "media_type": info.media_type,
                "matches": rows,
                "manifest": manifest,
            }
            self.stdout.write(json.dumps(document))
            return
        if info.kind != "text":
            self._manifest(path, manifest)
        if not rows:
            self.stdout.write(f"{path}: no registered work matches")
        for row in rows:
            if row["passages"]:
                pair = row["passages"][0]
                where = (
                    f"your characters {pair['query_start']}-{pair['query_end']} = the work's "
                    f"{pair['source_start']}-{pair['source_end']} (v{pair['source_version']}): "
                    f"“{pair['source_text'][:80]}”"
                )
            elif row["offset_s"] is not None:
                where = f"offset {row['offset_s']:.1f} s"
            else:
                where = f"region {row['region']}"
            self.stdout.write(
                f"{row['kind']:5} work #{row['work']} “{row['title']}”: confidence {row['confidence']:.3f} "
                f"(score {row['score']}), {where}"
            )

    def _manifest(self, path: Path, manifest: dict[str, Any] | None) -> None:
        if manifest is None:
            self.stdout.write(f"{path}: no C2PA manifest (never made, or stripped)")
            return
        licence = manifest.get("licence") or {}
        ingredients = ", ".join(
            f"“{item['title']}” ({item['relationship']})" for item in manifest["ingredients"]
        )
        self.stdout.write(
            f"C2PA manifest: “{manifest['title']}” signed by {manifest['signer']} ({manifest['issuer']}), "
            f"{manifest['validation_state'].lower()}; "
            f"AI-generated: {'yes' if manifest['ai_generated'] else 'no'}"
        )
        if ingredients:
            self.stdout.write(f"  ingredients: {ingredients}")
        if licence:
            self.stdout.write(
                f"  licence: grant #{licence.get('grant')}, terms {licence.get('terms_url')}, "
                f"{len(licence.get('receipts') or [])} access receipt(s)"
            )
