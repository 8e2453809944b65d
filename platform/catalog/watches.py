"""Watches: a creator follows a vendor's published feed of outputs for copies of their own works.

The feed is a list of file URLs (one per line, or a JSON array of strings; relative URLs resolve against
the feed's), served where a partner file may be (catalog.webhooks.allowed_url). `watches_scan` (every 15
minutes) fetches each URL it has not seen, once, and compares the file with the catalogue: a confident
match of one of the watcher's works that no licence of the vendor's organisation covers registers the
file as that vendor's output and opens a claim on it, which the watcher then decides like any claim on an
output (monetize charges the vendor through escrow: royalties.claims).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from urllib.parse import urljoin, urlsplit

from django.db import IntegrityError, transaction

from accounts.models import Membership, Organisation, Role, User
from catalog import tracing
from catalog.models import Claim, Grant, GrantStatus, Output, Watch, WatchItem
from catalog.partners import fetch_file
from catalog.storage import blob_store
from catalog.webhooks import allowed_url
from common import clock
from common.problems import ApiError, Conflict, Forbidden, NotFound
from media.errors import MediaError

MAX_WATCHES = 20
MAX_FEED_URLS = 10_000
MAX_NEW_PER_SCAN = 100
MATCHES_PER_FILE = 5


def watch_create(*, owner: User, organisation_slug: str, feed_url: str) -> Watch:
    if owner.role != Role.CREATOR:
        raise Forbidden("Only creators watch feeds for copies of their works.", code="creator_required")
    organisation = Organisation.objects.filter(slug=organisation_slug).first()
    if organisation is None:
        raise NotFound("No such organisation.", code="organisation_not_found")
    if Watch.objects.filter(owner=owner, active=True).count() >= MAX_WATCHES:
        raise Conflict(f"A creator has at most {MAX_WATCHES} watches.", code="too_many_watches")
    return Watch.objects.create(
        owner=owner, organisation=organisation, feed_url=allowed_url(feed_url, what="file")
    )


def _feed(watch: Watch) -> list[str]:
    raw = fetch_file(watch.feed_url)
    try:
        text = raw.decode("utf-8")
        entries = json.loads(text) if text.lstrip().startswith("[") else text.splitlines()
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError("The feed is neither a list of URLs nor a JSON array.", code="invalid_feed") from None
    if not isinstance(entries, list):
        raise ApiError("The feed is neither a list of URLs nor a JSON array.", code="invalid_feed")
    urls = []
    for entry in entries[:MAX_FEED_URLS]:
        if isinstance(entry, str) and entry.strip() and not entry.lstrip().startswith("#"):
            urls.append(urljoin(watch.feed_url, entry.strip()))
    return urls


def _respondent(organisation: Organisation) -> User | None:
    """Who answers for the organisation's outputs: its first owner, else its first member."""
    membership = (
        Membership.objects.filter(organisation=organisation)
        .order_by("-role", "id")  # "owner" sorts after "member": descending puts owners first
        .select_related("user")
        .first()
    )
    return membership.user if membership is not None else None


def watch_scan(watch: Watch) -> list[Claim]:
    """Compare the feed's new files with the watcher's works; answers the claims it opened."""
    try:
        urls = _feed(watch)
    except ApiError as exc:
        watch.last_error, watch.last_scanned_at = str(exc.detail)[:300], clock.now()
        watch.save(update_fields=["last_error", "last_scanned_at"])
        return []
    seen = set(WatchItem.objects.filter(watch=watch).values_list("url", flat=True))
    respondent = _respondent(watch.organisation)
    opened: list[Claim] = []
    for url in [url for url in dict.fromkeys(urls) if url not in seen][:MAX_NEW_PER_SCAN]:
        opened += _check(watch, url, respondent)
    watch.last_error, watch.last_scanned_at = "", clock.now()
    watch.save(update_fields=["last_error", "last_scanned_at"])
    return opened


def _check(watch: Watch, url: str, respondent: User | None) -> list[Claim]:
    try:
        data = fetch_file(url)
        info, text = tracing.read_any(data)
        matches = tracing.match_works(data=data, info=info, user=None, text=text, limit=MATCHES_PER_FILE)
    except (ApiError, MediaError) as exc:
        with transaction.atomic():
            WatchItem.objects.get_or_create(watch=watch, url=url, defaults={"error": str(exc)[:300]})
        return []
    mine = [m for m in matches if m.work.created_by_id == watch.owner_id]
    licensed = set(
        Grant.objects.filter(
            organisation=watch.organisation, status=GrantStatus.ACTIVE, offer__work__in=[m.work for m in mine]
        ).values_list("offer__work_id", flat=True)
    )
    uncovered = [
        m for m in mine if m.work.pk not in licensed and m.match.confidence >= tracing.CLAIM_CONFIDENCE
    ]
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        with transaction.atomic():
            WatchItem.objects.create(
                watch=watch, url=url, sha256=sha256, matched_works=[m.work.pk for m in mine]
            )
            if not uncovered or respondent is None:
                return []
            blob, _ = blob_store(data=data, info=info)
            output = Output.objects.create(
                organisation=watch.organisation,
                registered_by=respondent,
                blob=blob,
                filename=posixpath.basename(urlsplit(url).path)[:255] or "output",
                result={
                    "found_by_watch": watch.pk,
                    "url": url,
                    "uncovered_works": sorted(m.work.pk for m in uncovered),
                },
            )
            return tracing.open_claims(uncovered, respondent=respondent, sha256=sha256, output=output)
    except IntegrityError:  # a concurrent scan recorded this URL first
        return []


def watches_scan() -> int:
    """The periodic job: every active watch once. Answers how many claims it opened."""
    opened = 0
    for watch in Watch.objects.filter(active=True).select_related("organisation").order_by("id"):
        opened += len(watch_scan(watch))
    return opened
