from typing import Any

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandParser

from catalog.models import Asset, WorkKind
from matching import services as media
from media.errors import MediaError


class Command(BaseCommand):
    help = (
        "Compute the fingerprints of the current algorithms for every stored file that lacks them (after an "
        "algorithm changes its version). Idempotent: run it again and it does nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=None, help="stop after this many files")

    def handle(self, *args: Any, **options: Any) -> None:
        done = failed = 0
        seen: set[str] = set()
        assets = Asset.objects.select_related("blob", "work").order_by("pk")
        for asset in assets.iterator():
            if asset.blob_id in seen:
                continue
            seen.add(asset.blob_id)
            kinds = media.fingerprint_kinds_for(asset.blob.kind, voice_work=asset.work.kind == WorkKind.VOICE)
            try:
                with default_storage.open(asset.blob.storage_name, "rb") as handle:
                    created = media.fingerprints_compute(
                        sha256=asset.blob_id, data=handle.read(), kinds=kinds, progress=lambda _percent: None
                    )
            except (MediaError, OSError) as exc:
                failed += 1
                self.stderr.write(f"{asset.blob_id[:12]}: {exc}")
                continue
            done += created
            if options["limit"] is not None and len(seen) >= options["limit"]:
                break
        self.stdout.write(f"{len(seen)} files checked, {done} fingerprints computed, {failed} failed")
