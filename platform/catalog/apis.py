"""The catalog's HTTP API. Views are thin: parse, call one service or selector, serialise."""

from __future__ import annotations

from typing import Any

import django_filters
from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.permissions import IsCreator, KeyScope, authenticated_user
from accounts.ratelimits import invitations_quota
from catalog import rsl, selectors, services
from catalog.models import (
    Asset,
    Grant,
    Offer,
    OfferUse,
    SplitShare,
    SplitSheet,
    UseClass,
    Work,
    WorkKind,
    WorkStatus,
)
from common.apis import SelectorListApi
from common.money import MAX_AMOUNT_MINOR
from common.problems import NotFound
from common.uploads import read_upload

# Serializers -------------------------------------------------------------------------------------------


class WorkSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.public_name", read_only=True)
    members = serializers.PrimaryKeyRelatedField[Work](many=True, read_only=True)

    class Meta:
        model = Work
        fields = [
            "id",
            "title",
            "kind",
            "description",
            "tags",
            "status",
            "created_by",
            "created_at",
            "members",
        ]


class AssetSerializer(serializers.ModelSerializer):
    sha256 = serializers.CharField(source="blob.sha256")
    media_type = serializers.CharField(source="blob.media_type")
    size_bytes = serializers.IntegerField(source="blob.size_bytes")
    width = serializers.IntegerField(source="blob.width", allow_null=True)
    height = serializers.IntegerField(source="blob.height", allow_null=True)
    duration_ms = serializers.IntegerField(source="blob.duration_ms", allow_null=True)
    text_version = serializers.IntegerField(
        source="text_version.version", allow_null=True, default=None, help_text="text works: the version"
    )
    words = serializers.IntegerField(source="text_version.words", allow_null=True, default=None)

    class Meta:
        model = Asset
        fields = [
            "id",
            "work",
            "filename",
            "sha256",
            "media_type",
            "size_bytes",
            "width",
            "height",
            "duration_ms",
            "text_version",
            "words",
            "created_at",
            "fingerprint_status",
            "fingerprint_progress",
            "fingerprint_error",
        ]


class SplitShareSerializer(serializers.ModelSerializer):
    email = serializers.SerializerMethodField(
        help_text="The invited address: shown to the work's manager, who typed it, and to its own "
        "invitee; null for everyone else (co-owners see each other's names, not addresses)."
    )
    user = serializers.SerializerMethodField(help_text="The co-owner's public name, once they accepted.")
    accepted = serializers.SerializerMethodField()

    class Meta:
        model = SplitShare
        fields = ["email", "user", "share_bps", "accepted", "accepted_at"]

    def _viewer(self) -> User | None:
        request = self.context.get("request")
        user = getattr(request, "user", None)
        return user if isinstance(user, User) else None

    @extend_schema_field(serializers.EmailField(allow_null=True))
    def get_email(self, share: SplitShare) -> str | None:
        viewer = self._viewer()
        if viewer is None:
            return None
        if share.sheet.work.created_by_id == viewer.pk or share.email.lower() == viewer.email.lower():
            return share.email
        return None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_user(self, share: SplitShare) -> str | None:
        return share.user.public_name if share.user is not None and share.accepted_at else None

    def get_accepted(self, share: SplitShare) -> bool:
        return share.accepted_at is not None


class SplitSheetSerializer(serializers.ModelSerializer):
    shares = SplitShareSerializer(many=True, read_only=True)

    class Meta:
        model = SplitSheet
        fields = ["id", "work", "version", "status", "created_at", "activated_at", "superseded_at", "shares"]


class OfferUseSerializer(serializers.ModelSerializer):
    class Meta:
        model = OfferUse
        fields = ["use_class", "price_minor", "price_per_1k_tokens_minor"]


class OfferSerializer(serializers.ModelSerializer):
    uses = OfferUseSerializer(many=True, read_only=True)
    work_title = serializers.CharField(source="work.title", read_only=True)
    work_kind = serializers.CharField(source="work.kind", read_only=True)
    creator = serializers.CharField(source="work.created_by.public_name", read_only=True)
    rsl_url = serializers.SerializerMethodField()

    class Meta:
        model = Offer
        fields = [
            "id",
            "work",
            "work_title",
            "work_kind",
            "creator",
            "version",
            "status",
            "currency",
            "uses",
            "commercial_use",
            "attribution_required",
            "derivative_share_bps",
            "derivative_approval_required",
            "licence_fee_minor",
            "territories",
            "expires_at",
            "quota",
            "platform_fee_bps",
            "explicit_content_allowed",
            "max_vocal_seconds",
            "release_approval_required",
            "created_at",
            "superseded_at",
            "rsl_url",
        ]

    def get_rsl_url(self, offer: Offer) -> str:
        return f"{settings.SITE_URL}/api/v1/offers/{offer.pk}/rsl"


class GrantSerializer(serializers.ModelSerializer):
    work = serializers.IntegerField(source="offer.work_id", read_only=True)
    offer_version = serializers.IntegerField(source="offer.version", read_only=True)
    licensee = serializers.CharField(source="licensee.public_name", read_only=True)

    class Meta:
        model = Grant
        fields = [
            "id",
            "offer",
            "offer_version",
            "work",
            "licensee",
            "organisation",
            "status",
            "fee_minor",
            "currency",
            "accesses_used",
            "created_at",
            "decided_at",
        ]


class ParentInputSerializer(serializers.Serializer):
    # Bounded by the id column's range: a larger number is a 400, not a database overflow (500).
    work = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    grant = serializers.IntegerField(min_value=1, max_value=2**63 - 1)


def _parent_claims(items: list[dict[str, int]]) -> list[services.ParentClaim]:
    return [services.ParentClaim(work_id=item["work"], grant_id=item["grant"]) for item in items]


# Works -------------------------------------------------------------------------------------------------


class WorkFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search in title, description and tags")
    tag = django_filters.CharFilter(method="by_tag")
    kind = django_filters.ChoiceFilter(choices=WorkKind.choices)
    status = django_filters.ChoiceFilter(choices=WorkStatus.choices)

    class Meta:
        model = Work
        fields = ["kind", "status"]

    def search(self, queryset: QuerySet[Work], name: str, value: str) -> QuerySet[Work]:
        return queryset.filter(Q(title__icontains=value) | Q(description__icontains=value))

    def by_tag(self, queryset: QuerySet[Work], name: str, value: str) -> QuerySet[Work]:
        # Tags are a small JSON list; a substring match on the quoted tag works on SQLite and PostgreSQL.
        return queryset.filter(tags__icontains=f'"{value.strip().lower()}"')


class WorkListCreateApi(SelectorListApi):
    """Your works (created by you or co-owned); register an original work (creators)."""

    queryset = Work.objects.none()
    permission_classes = [IsAuthenticated, KeyScope, IsCreator]
    serializer_class = WorkSerializer
    filterset_class = WorkFilter
    ordering_fields = ["created_at", "title"]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WorkListCreateInput"

        title = serializers.CharField(max_length=200)
        kind = serializers.ChoiceField(choices=WorkKind.choices)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        tags = serializers.ListField(child=serializers.CharField(max_length=40), required=False, default=list)

    def select(self) -> QuerySet[Work]:
        return selectors.works_visible_to(user=authenticated_user(self.request)).prefetch_related("members")

    @extend_schema(request=InputSerializer, responses={201: WorkSerializer}, operation_id="works_create")
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        work = services.work_create(user=authenticated_user(request), **data.validated_data)
        return Response(WorkSerializer(work).data, status=status.HTTP_201_CREATED)


class WorkDetailApi(APIView):
    permission_classes = [IsAuthenticated, KeyScope]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WorkDetailInput"

        title = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(required=False, allow_blank=True)
        tags = serializers.ListField(child=serializers.CharField(max_length=40), required=False)

    @extend_schema(responses=WorkSerializer, operation_id="works_retrieve")
    def get(self, request: Request, work_id: int) -> Response:
        return Response(
            WorkSerializer(selectors.work_get_visible(user=authenticated_user(request), work_id=work_id)).data
        )

    @extend_schema(request=InputSerializer, responses=WorkSerializer, operation_id="works_update")
    def patch(self, request: Request, work_id: int) -> Response:
        work = selectors.work_get_managed(user=authenticated_user(request), work_id=work_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(WorkSerializer(services.work_update(work=work, **data.validated_data)).data)


class WorkWithdrawApi(APIView):
    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(request=None, responses=WorkSerializer, operation_id="works_withdraw")
    def post(self, request: Request, work_id: int) -> Response:
        work = selectors.work_get_managed(user=authenticated_user(request), work_id=work_id)
        return Response(WorkSerializer(services.work_withdraw(work=work)).data)


class WorkMembersApi(APIView):
    """Set the member works of a style or a voice."""

    permission_classes = [IsAuthenticated, KeyScope]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WorkMembersInput"

        members = serializers.ListField(child=serializers.IntegerField(min_value=1), max_length=1000)

    @extend_schema(request=InputSerializer, responses=WorkSerializer, operation_id="works_members_set")
    def put(self, request: Request, work_id: int) -> Response:
        work = selectors.work_get_managed(user=authenticated_user(request), work_id=work_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        work = services.work_members_set(collection=work, member_ids=data.validated_data["members"])
        return Response(WorkSerializer(work).data)


# Assets ------------------------------------------------------------------------------------------------


class AssetListCreateApi(SelectorListApi):
    """A work's files; upload one (multipart field `file`). The type is decided from the content."""

    queryset = Asset.objects.none()
    permission_classes = [IsAuthenticated, KeyScope]
    serializer_class = AssetSerializer
    parser_classes = [MultiPartParser]
    quota_scope = "uploads"  # uploads per day (accounts.ratelimits)
    ordering_fields = ["created_at"]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AssetListCreateInput"

        file = serializers.FileField()

    def select(self) -> QuerySet[Asset]:
        work = selectors.work_get_visible(
            user=authenticated_user(self.request), work_id=self.kwargs["work_id"]
        )
        return selectors.assets_of(work=work)

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: AssetSerializer, 200: AssetSerializer},
        operation_id="works_assets_create",
    )
    def post(self, request: Request, work_id: int) -> Response:
        work = selectors.work_get_managed(user=authenticated_user(request), work_id=work_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        result = services.asset_upload(
            work=work, user=authenticated_user(request), data=read_upload(upload), filename=upload.name or ""
        )
        body = dict(AssetSerializer(result.asset).data)
        body["new_content"] = result.new_content
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class AssetDetailApi(APIView):
    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(responses=AssetSerializer, operation_id="assets_retrieve")
    def get(self, request: Request, asset_id: int) -> Response:
        return Response(
            AssetSerializer(
                selectors.asset_get_visible(user=authenticated_user(request), asset_id=asset_id)
            ).data
        )


# Split sheets ------------------------------------------------------------------------------------------


class SplitSheetListCreateApi(SelectorListApi):
    """A work's split sheet versions; propose a new version (co-owners are invited by email)."""

    queryset = SplitSheet.objects.none()
    permission_classes = [IsAuthenticated, KeyScope]
    serializer_class = SplitSheetSerializer

    class ShareInput(serializers.Serializer):
        email = serializers.EmailField()
        share_bps = serializers.IntegerField(min_value=1, max_value=10_000)

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "SplitSheetListCreateInput"

        shares = serializers.ListField(child=serializers.DictField(), allow_empty=False, max_length=100)

        def validate_shares(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
            items = []
            for item in value:
                share = SplitSheetListCreateApi.ShareInput(data=item)
                share.is_valid(raise_exception=True)
                items.append(share.validated_data)
            return items

    def select(self) -> QuerySet[SplitSheet]:
        work = selectors.work_get_visible(
            user=authenticated_user(self.request), work_id=self.kwargs["work_id"]
        )
        return selectors.split_sheets_of(work=work)

    @extend_schema(
        request=InputSerializer, responses={201: SplitSheetSerializer}, operation_id="split_sheets_create"
    )
    def post(self, request: Request, work_id: int) -> Response:
        work = selectors.work_get_managed(user=authenticated_user(request), work_id=work_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        shares = [(item["email"], item["share_bps"]) for item in data.validated_data["shares"]]
        user = authenticated_user(request)
        # Counted once the proposal is valid; over the quota, the proposal rolls back and mails nobody.
        with transaction.atomic():
            sheet = services.split_sheet_propose(work=work, user=user, shares=shares)
            invitations_quota(request, user=user, shares=shares)
        sheet = selectors.split_sheets_of(work=work).get(pk=sheet.pk)
        return Response(
            SplitSheetSerializer(sheet, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class SplitSheetDetailApi(APIView):
    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(responses=SplitSheetSerializer, operation_id="split_sheets_retrieve")
    def get(self, request: Request, sheet_id: int) -> Response:
        sheet = selectors.split_sheet_get_visible(user=authenticated_user(request), sheet_id=sheet_id)
        return Response(SplitSheetSerializer(sheet, context={"request": request}).data)


class SplitInvitationAcceptApi(APIView):
    """Accept a co-ownership invitation with the token from the email."""

    permission_classes = [IsAuthenticated, KeyScope]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "SplitInvitationAcceptInput"

        token = serializers.CharField(max_length=100)

    @extend_schema(
        request=InputSerializer, responses=SplitSheetSerializer, operation_id="split_invitations_accept"
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sheet = services.split_share_accept(
            token=data.validated_data["token"], user=authenticated_user(request)
        )
        sheet = SplitSheet.objects.select_related("work").prefetch_related("shares__user").get(pk=sheet.pk)
        return Response(SplitSheetSerializer(sheet, context={"request": request}).data)


# Offers ------------------------------------------------------------------------------------------------


class OfferInputSerializer(serializers.Serializer):
    currency = serializers.RegexField(r"^[A-Za-z]{3}$", help_text="ISO 4217 code")
    uses = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=MAX_AMOUNT_MINOR),
        help_text='Allowed use classes, each mapped to its per-access price in minor units: {"ai-train": 5}.',
    )
    token_prices = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=services.MAX_TOKEN_PRICE_MINOR),
        required=False,
        default=dict,
        help_text='Text retrieval: allowed use classes mapped to a price per 1,000 tokens: {"ai-input": 20}.',
    )
    commercial_use = serializers.BooleanField(default=False)
    attribution_required = serializers.BooleanField(default=True)
    derivative_share_bps = serializers.IntegerField(min_value=0, max_value=10_000, default=0)
    derivative_approval_required = serializers.BooleanField(default=False)
    licence_fee_minor = serializers.IntegerField(min_value=0, max_value=MAX_AMOUNT_MINOR, default=0)
    territories = serializers.ListField(
        child=serializers.CharField(max_length=2), default=list, max_length=250
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    quota = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, required=False, allow_null=True, default=None
    )
    platform_fee_bps = serializers.IntegerField(
        min_value=0, max_value=10_000, required=False, allow_null=True
    )
    explicit_content_allowed = serializers.BooleanField(
        default=True, help_text="false: studio jobs must declare their lyrics not explicit"
    )
    max_vocal_seconds = serializers.IntegerField(
        min_value=1,
        max_value=services.MAX_VOCAL_SECONDS,
        required=False,
        allow_null=True,
        default=None,
        help_text="the longest vocal (any audio input of a studio job) in seconds; omit for no cap",
    )
    release_approval_required = serializers.BooleanField(
        default=False, help_text="each release of a derivative waits for the owner's approval"
    )

    def validate_uses(self, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(UseClass.values))
        if unknown:
            raise serializers.ValidationError(f"Unknown use classes: {', '.join(unknown)}.")
        return value


class WorkOffersApi(SelectorListApi):
    """Every version of a work's terms; publish a new version (the current one is superseded)."""

    queryset = Offer.objects.none()
    permission_classes = [IsAuthenticated, KeyScope]
    serializer_class = OfferSerializer

    def select(self) -> QuerySet[Offer]:
        work = selectors.work_get_visible(
            user=authenticated_user(self.request), work_id=self.kwargs["work_id"]
        )
        return selectors.offers_of(work=work)

    @extend_schema(
        request=OfferInputSerializer, responses={201: OfferSerializer}, operation_id="works_offers_publish"
    )
    def post(self, request: Request, work_id: int) -> Response:
        work = selectors.work_get_managed(user=authenticated_user(request), work_id=work_id)
        data = OfferInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        fields["currency"] = fields["currency"].upper()
        terms = services.Terms(**fields)
        offer = services.offer_publish(
            work=work,
            user=authenticated_user(request),
            terms=terms,
            platform_staff=authenticated_user(request).is_staff,
        )
        return Response(OfferSerializer(selectors.offers_of(work=work).get(pk=offer.pk)).data, status=201)


class OfferFilter(django_filters.FilterSet):
    use_class = django_filters.ChoiceFilter(choices=UseClass.choices, field_name="uses__use_class")
    kind = django_filters.ChoiceFilter(choices=WorkKind.choices, field_name="work__kind")
    currency = django_filters.CharFilter()
    q = django_filters.CharFilter(field_name="work__title", lookup_expr="icontains")

    class Meta:
        model = Offer
        fields = ["work", "currency"]


class OfferListApi(SelectorListApi):
    """The public catalogue: current terms of every published work. No authentication needed."""

    queryset = Offer.objects.none()
    permission_classes = [AllowAny]
    serializer_class = OfferSerializer
    filterset_class = OfferFilter
    ordering_fields = ["created_at", "licence_fee_minor"]

    def select(self) -> QuerySet[Offer]:
        return selectors.offers_public().distinct()


def _readable_offer(request: Request, offer_id: int) -> Offer:
    try:
        return selectors.offer_get_readable(
            user=request.user if isinstance(request.user, User) else None, offer_id=offer_id
        )
    except Offer.DoesNotExist:
        raise NotFound(code="offer_not_found") from None


class OfferDetailApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses=OfferSerializer, operation_id="offers_retrieve")
    def get(self, request: Request, offer_id: int) -> Response:
        return Response(OfferSerializer(_readable_offer(request, offer_id)).data)


class OfferRslApi(APIView):
    """The offer as an RSL 1.0 licence document (application/rsl+xml)."""

    permission_classes = [AllowAny]

    @extend_schema(
        responses={(200, rsl.CONTENT_TYPE): OpenApiResponse(OpenApiTypes.STR, description="RSL 1.0 XML")},
        operation_id="offers_rsl",
    )
    def get(self, request: Request, offer_id: int) -> HttpResponse:
        offer = _readable_offer(request, offer_id)
        return HttpResponse(rsl.render([offer], site_url=settings.SITE_URL), content_type=rsl.CONTENT_TYPE)


# Grants ------------------------------------------------------------------------------------------------


class GrantListApi(SelectorListApi):
    """Grants you hold or that were made on your works. Accepting an offer (POST on the same address)
    charges its licence fee, so it is served by royalties.apis_licences, which extends this view."""

    queryset = Grant.objects.none()
    permission_classes = [IsAuthenticated, KeyScope]
    serializer_class = GrantSerializer
    filterset_fields = ["status", "offer"]
    ordering_fields = ["created_at"]

    def select(self) -> QuerySet[Grant]:
        return selectors.grants_visible_to(user=authenticated_user(self.request))


class GrantDetailApi(APIView):
    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(responses=GrantSerializer, operation_id="grants_retrieve")
    def get(self, request: Request, grant_id: int) -> Response:
        return Response(
            GrantSerializer(
                selectors.grant_get_visible(user=authenticated_user(request), grant_id=grant_id)
            ).data
        )


class GrantDecideApi(APIView):
    """The work's manager approves or rejects a grant that waits for approval."""

    permission_classes = [IsAuthenticated, KeyScope]
    approve = True

    @extend_schema(request=None, responses=GrantSerializer)
    def post(self, request: Request, grant_id: int) -> Response:
        grant = selectors.grant_get_visible(user=authenticated_user(request), grant_id=grant_id)
        grant = services.grant_decide(grant=grant, user=authenticated_user(request), approve=self.approve)
        return Response(GrantSerializer(grant).data)


# Derivatives -------------------------------------------------------------------------------------------


class DerivativeListCreateApi(SelectorListApi):
    """Your derivative works; register a new one naming its parents and the grants that allow it."""

    queryset = Work.objects.none()
    permission_classes = [IsAuthenticated, KeyScope]
    serializer_class = WorkSerializer
    ordering_fields = ["created_at", "title"]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "DerivativeListCreateInput"

        title = serializers.CharField(max_length=200)
        kind = serializers.ChoiceField(choices=WorkKind.choices)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        tags = serializers.ListField(child=serializers.CharField(max_length=40), required=False, default=list)
        parents = ParentInputSerializer(many=True, allow_empty=False)

    def select(self) -> QuerySet[Work]:
        return selectors.derivatives_visible_to(user=authenticated_user(self.request)).prefetch_related(
            "members"
        )

    @extend_schema(
        request=InputSerializer, responses={201: WorkSerializer}, operation_id="derivatives_create"
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        parents = _parent_claims(fields.pop("parents"))
        work = services.derivative_create(user=authenticated_user(request), parents=parents, **fields)
        return Response(WorkSerializer(work).data, status=status.HTTP_201_CREATED)


class LineageSerializer(serializers.Serializer):
    class WorkRef(serializers.Serializer):
        id = serializers.IntegerField()
        title = serializers.CharField()
        kind = serializers.CharField()

    class Edge(serializers.Serializer):
        child = serializers.IntegerField()
        # DRF's metaclass moves declared fields off the class, so this does not shadow Field.parent.
        parent = serializers.IntegerField()  # type: ignore[assignment]
        share_bps = serializers.IntegerField()

    class StackEntry(serializers.Serializer):
        work = serializers.IntegerField(source="work.id")
        title = serializers.CharField(source="work.title")
        share_bps = serializers.DecimalField(
            max_digits=40, decimal_places=20, coerce_to_string=True, normalize_output=True
        )

    work = WorkRef()
    ancestors = WorkRef(many=True)
    edges = Edge(many=True)
    stack = StackEntry(many=True)
    owners_share_bps = serializers.DecimalField(
        max_digits=40, decimal_places=20, coerce_to_string=True, normalize_output=True
    )


class WorkLineageApi(APIView):
    """A work's ancestors at every depth and its royalty stack: each ancestor's exact share, in bps."""

    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(responses=LineageSerializer, operation_id="works_lineage")
    def get(self, request: Request, work_id: int) -> Response:
        work = selectors.work_get_visible(user=authenticated_user(request), work_id=work_id)
        return Response(LineageSerializer(selectors.lineage_of(work=work)).data)


class WorkParentsAddApi(APIView):
    """Name further parents of one of your works (refused if it would create a cycle)."""

    permission_classes = [IsAuthenticated, KeyScope]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WorkParentsAddInput"

        parents = ParentInputSerializer(many=True, allow_empty=False)

    @extend_schema(request=InputSerializer, responses=LineageSerializer, operation_id="works_parents_add")
    def post(self, request: Request, work_id: int) -> Response:
        work = selectors.work_get_managed(user=authenticated_user(request), work_id=work_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        work = services.work_parents_add(
            work=work,
            user=authenticated_user(request),
            parents=_parent_claims(data.validated_data["parents"]),
        )
        return Response(LineageSerializer(selectors.lineage_of(work=work)).data)
