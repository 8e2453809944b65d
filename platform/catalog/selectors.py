from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, TypedDict

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Substr
from django.shortcuts import get_object_or_404

from accounts.models import User
from catalog import lineage
from catalog.models import (
    Asset,
    Blob,
    Claim,
    ClaimDecision,
    ClaimResolution,
    ClaimStatus,
    Grant,
    Offer,
    OfferStatus,
    OfferUse,
    SplitShare,
    SplitSheet,
    SplitSheetStatus,
    TextVersion,
    Work,
    WorkParent,
    WorkStatus,
)
from common import clock
from common.money import BPS_WHOLE
from matching import selectors as media_selectors
from matching import services as media
from media.errors import MediaError
from media.text import embedding, quotes
from media.text import passages as text_passages
from media.text.document import inspect_text
from media.text.embedding import PassageRef


def works_visible_to(*, user: User) -> QuerySet[Work]:
    """The works a user manages (created) or co-owns on the active split sheet."""
    co_owned = SplitShare.objects.filter(
        sheet__work=OuterRef("pk"), sheet__status=SplitSheetStatus.ACTIVE, user=user
    )
    return Work.objects.filter(Q(created_by=user) | Exists(co_owned)).select_related("created_by")


def work_get_visible(*, user: User, work_id: int) -> Work:
    return get_object_or_404(works_visible_to(user=user), pk=work_id)


def work_get_managed(*, user: User, work_id: int) -> Work:
    """Only the work's manager (its creator) may change it; everyone else gets 404."""
    return get_object_or_404(Work.objects.select_related("created_by"), pk=work_id, created_by=user)


def assets_of(*, work: Work) -> QuerySet[Asset]:
    return Asset.objects.filter(work=work).select_related("blob")


def asset_get_visible(*, user: User, asset_id: int) -> Asset:
    return get_object_or_404(
        Asset.objects.select_related("blob", "work").filter(work__in=works_visible_to(user=user)), pk=asset_id
    )


def split_sheets_of(*, work: Work) -> QuerySet[SplitSheet]:
    return SplitSheet.objects.filter(work=work).prefetch_related(
        Prefetch("shares", queryset=SplitShare.objects.select_related("user"))
    )


def split_sheet_get_visible(*, user: User, sheet_id: int) -> SplitSheet:
    visible = SplitSheet.objects.filter(Q(work__in=works_visible_to(user=user)) | Q(shares__user=user))
    return get_object_or_404(
        visible.distinct().prefetch_related(
            Prefetch("shares", queryset=SplitShare.objects.select_related("user"))
        ),
        pk=sheet_id,
    )


def split_sheet_active(*, work: Work) -> SplitSheet | None:
    return split_sheets_of(work=work).filter(status=SplitSheetStatus.ACTIVE).first()


def _open_invitations() -> QuerySet[SplitShare]:
    return (
        SplitShare.objects.filter(sheet__status=SplitSheetStatus.PENDING, accepted_at__isnull=True)
        .exclude(invite_token_hash="")
        .select_related("sheet__work", "sheet__created_by")
        .order_by("-invited_at", "-id")
    )


def invitations_open_for(*, user: User) -> QuerySet[SplitShare]:
    """The co-ownership invitations waiting for this user's answer (addressed to their email)."""
    return _open_invitations().filter(email__iexact=user.email)


def invitation_for_token(*, token_hash: str, user: User) -> SplitShare | None:
    """The open invitation a link's token names, if it is addressed to this user; None otherwise."""
    return invitations_open_for(user=user).filter(invite_token_hash=token_hash).first()


def invitations_open_on(*, work: Work) -> QuerySet[SplitShare]:
    """The invitations of the work's pending proposal that nobody has answered yet (for its manager)."""
    return _open_invitations().filter(sheet__work=work)


def _offers() -> QuerySet[Offer]:
    return Offer.objects.select_related("work", "work__created_by").prefetch_related(
        Prefetch("uses", queryset=OfferUse.objects.order_by("use_class"))
    )


def offers_public() -> QuerySet[Offer]:
    """Current offers of published works: what anyone may read and accept."""
    now = clock.now()
    return (
        _offers()
        .filter(status=OfferStatus.CURRENT, work__status=WorkStatus.PUBLISHED)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    )


def offer_get_readable(*, user: User | None, offer_id: int) -> Offer:
    """Public offers to anyone; every version of a work's offers to those who can see the work."""
    offer = get_object_or_404(_offers(), pk=offer_id)
    if offer.work.status == WorkStatus.PUBLISHED and offer.status != OfferStatus.WITHDRAWN:
        return offer
    if (
        user is not None
        and user.is_authenticated
        and works_visible_to(user=user).filter(pk=offer.work_id).exists()
    ):
        return offer
    raise Offer.DoesNotExist  # mapped to 404 by the caller


def offers_of(*, work: Work) -> QuerySet[Offer]:
    return _offers().filter(work=work)


def grants_visible_to(*, user: User) -> QuerySet[Grant]:
    """Grants the user holds (personally or through an organisation) and grants on works they manage."""
    return (
        Grant.objects.filter(
            Q(licensee=user) | Q(organisation__membership__user=user) | Q(offer__work__created_by=user)
        )
        .distinct()
        .select_related("offer", "offer__work", "licensee", "organisation")
    )


def grant_get_visible(*, user: User, grant_id: int) -> Grant:
    return get_object_or_404(grants_visible_to(user=user), pk=grant_id)


def parent_edges(work_ids: set[int]) -> dict[int, list[tuple[int, int]]]:
    edges: dict[int, list[tuple[int, int]]] = {}
    for child_id, parent_id, share_bps in WorkParent.objects.filter(child_id__in=work_ids).values_list(
        "child_id", "parent_id", "share_bps"
    ):
        edges.setdefault(child_id, []).append((parent_id, share_bps))
    return edges


def work_ancestor_ids(*, work_id: int) -> set[int]:
    return lineage.ancestors({work_id}, parent_edges)


def royalty_stack(*, work_id: int) -> dict[int, Fraction]:
    ids = work_ancestor_ids(work_id=work_id) | {work_id}
    return lineage.royalty_stack(work_id, parent_edges(ids))


class StackEntry(TypedDict):
    work: Work
    share_bps: Decimal


class Edge(TypedDict):
    child: int
    parent: int
    share_bps: int


class Lineage(TypedDict):
    work: Work
    ancestors: list[Work]
    edges: list[Edge]
    stack: list[StackEntry]
    owners_share_bps: Decimal


def lineage_of(*, work: Work) -> Lineage:
    """The derivative graph above a work: its ancestors, the edges, and each ancestor's exact share."""
    ancestor_ids = work_ancestor_ids(work_id=work.pk)
    edges = parent_edges(ancestor_ids | {work.pk})
    stack = lineage.royalty_stack(work.pk, edges)
    works = {w.pk: w for w in Work.objects.filter(pk__in=ancestor_ids).select_related("created_by")}
    return {
        "work": work,
        "ancestors": [works[i] for i in sorted(ancestor_ids)],
        "edges": [
            {"child": child, "parent": parent, "share_bps": share}
            for child, links in sorted(edges.items())
            for parent, share in links
        ],
        "stack": [
            {"work": works[ancestor], "share_bps": lineage.as_bps(share)}
            for ancestor, share in sorted(stack.items(), key=lambda item: (-item[1], item[0]))
        ],
        # Ancestors are paid out of their children's cut, so the work's own owners keep what the direct
        # parents do not take.
        "owners_share_bps": lineage.as_bps(
            1 - sum((Fraction(share, BPS_WHOLE) for _, share in edges.get(work.pk, [])), Fraction(0))
        ),
    }


def derivatives_visible_to(*, user: User) -> QuerySet[Work]:
    return works_visible_to(user=user).filter(parent_links__isnull=False).distinct()


def claims_visible_to(*, user: User) -> QuerySet[Claim]:
    """Claims on works the user manages or co-owns, claims against the user, and all of them for staff."""
    claims = Claim.objects.select_related(
        "work", "respondent", "subject_asset", "matched_asset__blob"
    ).prefetch_related("events")
    if user.is_staff:
        return claims
    return claims.filter(Q(work__in=works_visible_to(user=user)) | Q(respondent=user)).distinct()


def claim_get_visible(*, user: User, claim_id: int) -> Claim:
    return get_object_or_404(claims_visible_to(user=user), pk=claim_id)


# When a claim's outcome is final ---------------------------------------------------------------------
#
# A decision may be disputed for CLAIM_DISPUTE_DAYS; an operator's resolution may be appealed once within
# as long; a resolution after an appeal is final at once. Claims decided or resolved before these dates
# were kept (no date) count as final.


def _window_start() -> datetime:
    return clock.now() - timedelta(days=int(settings.CLAIM_DISPUTE_DAYS))


def claims_final() -> Q:
    """The claims whose outcome can no longer change."""
    start = _window_start()
    decided = Q(status=ClaimStatus.DECIDED) & (Q(decided_at__isnull=True) | Q(decided_at__lte=start))
    resolved = Q(status=ClaimStatus.RESOLVED) & (
        Q(appealed=True) | Q(resolved_at__isnull=True) | Q(resolved_at__lte=start)
    )
    return decided | resolved


def claim_is_final(claim: Claim) -> bool:
    return Claim.objects.filter(claims_final(), pk=claim.pk).exists()


IN_FORCE = ~Q(resolution=ClaimResolution.DISMISSED)  # a dismissed claim's decision is void


def monetizing_claim_on(*, work_id: int) -> Claim | None:
    """A final monetize claim on media registered in this work: the work's revenue goes to the claimed
    work's owners (royalties.claims re-routes what was held while the claim was pending)."""
    return (
        Claim.objects.filter(
            claims_final(), IN_FORCE, subject_work_id=work_id, decision=ClaimDecision.MONETIZE
        )
        .order_by("created_at", "pk")
        .first()
    )


def claims_holding_revenue() -> QuerySet[Claim]:
    """Claims on uploaded media whose work's revenue (from the claim's date on) waits unsettled: while the
    claim is open or disputed, and under a monetize decision (until royalties.claims re-routes it to the
    claimed work, or a dismissal past its appeal window leaves it to the work)."""
    start = _window_start()
    dismissed_for_good = Q(resolution=ClaimResolution.DISMISSED) & (
        Q(appealed=True) | Q(resolved_at__isnull=True) | Q(resolved_at__lte=start)
    )
    return Claim.objects.filter(subject_work__isnull=False).filter(
        Q(status__in=[ClaimStatus.OPEN, ClaimStatus.DISPUTED])
        | (Q(decision=ClaimDecision.MONETIZE) & ~dismissed_for_good)
    )


# Text retrieval ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PassageCandidate:
    """A passage of the current version of a published text work whose current terms allow a use."""

    work_id: int
    work_title: str
    offer_id: int
    text_version_id: int
    text_version: int
    start: int
    end: int
    tokens: int
    score: float
    # The current offer's price per 1,000 tokens for the use (None where the caller did not look it up).
    price_per_1k_tokens_minor: int | None = None


# Passages less similar than this to the query are not worth selling.
RETRIEVAL_MIN_SCORE = 0.2


def passage_candidates(
    *, query: str, use_class: str, currency: str, limit: int = 200
) -> list[PassageCandidate]:
    """The passages nearest the query, best first, from works that are published, whose current offer is
    in `currency` and allows `use_class`, and only from each work's newest text version."""
    found = media.passage_search(text=query, limit=limit)
    by_content: dict[str, list[tuple[PassageRef, float]]] = {}
    for ref, score in found:
        if score >= RETRIEVAL_MIN_SCORE:
            by_content.setdefault(ref.content, []).append((ref, score))
    if not by_content:
        return []
    newest = TextVersion.objects.filter(work=OuterRef("work")).order_by("-version").values("pk")[:1]
    versions: list[dict[str, Any]] = [
        dict(row)
        for row in TextVersion.objects.filter(
            asset__blob_id__in=list(by_content), pk=Subquery(newest), work__status=WorkStatus.PUBLISHED
        ).values("pk", "version", "work_id", "work__title", "asset__blob_id")
    ]
    offers = {
        work_id: (offer_id, per_1k)
        for work_id, offer_id, per_1k in OfferUse.objects.filter(
            offer__work_id__in={row["work_id"] for row in versions},
            offer__status=OfferStatus.CURRENT,
            offer__currency=currency,
            use_class=use_class,
        ).values_list("offer__work_id", "offer_id", "price_per_1k_tokens_minor")
    }
    versions = [
        dict(row, offer_id=offers[row["work_id"]][0], per_1k=offers[row["work_id"]][1])
        for row in versions
        if row["work_id"] in offers
    ]
    candidates = []
    for row in versions:
        for ref, score in by_content[row["asset__blob_id"]]:
            candidates.append(
                PassageCandidate(
                    work_id=row["work_id"],
                    work_title=row["work__title"],
                    offer_id=row["offer_id"],
                    text_version_id=row["pk"],
                    text_version=row["version"],
                    start=ref.start,
                    end=ref.end,
                    tokens=ref.tokens,
                    score=score,
                    price_per_1k_tokens_minor=row["per_1k"],
                )
            )
    candidates.sort(key=lambda c: (-c.score, c.work_id, c.start))
    return candidates


def text_excerpt(*, text_version_id: int, start: int, end: int) -> str:
    """Characters start..end of a text version's normalised text, read by the database (a book's whole
    text is not loaded for one passage)."""
    part = (
        TextVersion.objects.filter(pk=text_version_id)
        .annotate(part=Substr("text", start + 1, end - start))
        .values_list("part", flat=True)
        .get()
    )
    return str(part)


def text_excerpts(*, spans: list[tuple[int, int, int]]) -> list[str]:
    """Characters start..end of each (text version, start, end), read by the database in one query."""
    if not spans:
        return []
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(spans))
    parameters = [
        value
        for n, (version, start, end) in enumerate(spans)
        for value in (n, version, start + 1, end - start)
    ]
    sql = (
        f"WITH spans (n, version_id, first, length) AS (VALUES {rows}) "  # noqa: S608
        f"SELECT spans.n, substr(t.text, spans.first, spans.length) FROM spans "
        f"JOIN {TextVersion._meta.db_table} t ON t.id = spans.version_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        found = dict(cursor.fetchall())
    return [str(found[n]) for n in range(len(spans))]


def text_full(*, text_version_id: int) -> str:
    return str(TextVersion.objects.values_list("text", flat=True).get(pk=text_version_id))


# Text works -------------------------------------------------------------------------------------------


def text_versions_of(*, work: Work) -> QuerySet[TextVersion]:
    """A text work's versions, newest first, without their text (a book's text is not loaded to list it)."""
    return (
        TextVersion.objects.filter(work=work).select_related("asset__blob").defer("text").order_by("-version")
    )


# A claim's texts side by side --------------------------------------------------------------------------

# Characters of context shown on each side of a matched span, and the most of a span shown.
CLAIM_CONTEXT_CHARACTERS = 240
CLAIM_SPAN_CHARACTERS = 2000
# A paraphrase is looked for among the copy's first passages, as the trace does.
_PARAPHRASE_QUERY_PASSAGES = 50


@dataclass(frozen=True)
class TextSide:
    """One side of a matched passage: the span and some context before and after it."""

    start: int
    end: int
    before: str
    span: str
    after: str
    cut_before: bool  # the text goes on before `before`
    cut_span: bool  # the span is longer than shown
    cut_after: bool


@dataclass(frozen=True)
class ClaimTextPassage:
    copy: TextSide
    source: TextSide
    source_version: int


def _side(text: str, start: int, end: int) -> TextSide:
    begin = max(0, start - CLAIM_CONTEXT_CHARACTERS)
    stop = min(len(text), end + CLAIM_CONTEXT_CHARACTERS)
    return TextSide(
        start=start,
        end=end,
        before=text[begin:start],
        span=text[start : min(end, start + CLAIM_SPAN_CHARACTERS)],
        after=text[end:stop],
        cut_before=begin > 0,
        cut_span=end - start > CLAIM_SPAN_CHARACTERS,
        cut_after=stop < len(text),
    )


def _claim_copy_text(claim: Claim) -> str | None:
    """The normalised text of the claimed copy (an uploaded text work's version, or a vendor's or partner's
    text file), or None when the copy is not text."""
    if claim.subject_asset_id is not None:
        version = TextVersion.objects.filter(asset_id=claim.subject_asset_id).values_list("text", flat=True)
        found = version.first()
        if found is not None:
            return str(found)
    blob = Blob.objects.filter(pk=claim.subject_sha256, kind="text").first()
    if blob is None:
        return None
    with default_storage.open(blob.storage_name, "rb") as handle:
        data = handle.read()
    try:
        return inspect_text(data).text
    except MediaError:
        return None


def _quote_spans(copy: str, source: str) -> list[tuple[int, int, int, int]]:
    table: quotes.QuoteIndex[int] = quotes.QuoteIndex()
    table.add(0, quotes.compute(source))
    return [
        (found.query_start, found.query_end, found.ref_start, found.ref_end)
        for found in table.query(copy, limit=1, min_score=0.0)
    ]


def _paraphrase_spans(
    copy: str, copy_sha256: str, source: str, source_sha256: str
) -> list[tuple[int, int, int, int]]:
    stored = media_selectors.passage_embeddings_of(sha256s=[copy_sha256, source_sha256])
    reference = stored.get(source_sha256) or embedding.compute(source)
    if copy_sha256 in stored:
        found = stored[copy_sha256]
        spans = list(zip(found.starts.tolist(), found.ends.tolist(), strict=True))
        vectors = found.vectors
    else:
        cut = text_passages.split(copy) or [text_passages.Passage(0, len(copy), len(copy.split()))]
        spans = [(p.start, p.end) for p in cut]
        vectors = embedding.embed([copy[p.start : p.end] for p in cut[:_PARAPHRASE_QUERY_PASSAGES]])
    vectors = vectors[:_PARAPHRASE_QUERY_PASSAGES]
    if not len(vectors) or not len(reference):
        return []
    cosines = vectors @ reference.vectors.T
    mine, theirs = np.unravel_index(int(np.argmax(cosines)), cosines.shape)
    return [
        (
            spans[int(mine)][0],
            spans[int(mine)][1],
            int(reference.starts[int(theirs)]),
            int(reference.ends[int(theirs)]),
        )
    ]


def claim_text_passages(*, claim: Claim) -> list[ClaimTextPassage]:
    """Where a text claim's copy quotes or paraphrases the claimed work, on both sides, with context.

    A claim keeps its match's kind, score and confidence but not the passages, so they are found again
    between the two texts alone: the quote's best chain of shared shingles, or the pair of passages
    closest in meaning (from the stored passage embeddings where the content has them). Empty when either
    side is not text (a manual claim, or media)."""
    if claim.match_kind not in (media.TextMatchKind.QUOTE, media.TextMatchKind.PARAPHRASE):
        return []
    matched = claim.matched_asset_id
    version = (
        TextVersion.objects.filter(asset_id=matched).select_related("asset").first() if matched else None
    )
    copy = _claim_copy_text(claim)
    if version is None or copy is None:
        return []
    source = version.text
    if claim.match_kind == media.TextMatchKind.QUOTE:
        spans = _quote_spans(copy, source)
    else:
        spans = _paraphrase_spans(copy, claim.subject_sha256, source, version.asset.blob_id)
    return [
        ClaimTextPassage(
            copy=_side(copy, copy_start, copy_end),
            source=_side(source, source_start, source_end),
            source_version=version.version,
        )
        for copy_start, copy_end, source_start, source_end in spans
    ]
