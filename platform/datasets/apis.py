"""The datasets API under /api/v1/: thin views over datasets.services and datasets.selectors."""

from __future__ import annotations

from typing import IO, Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import FileResponse, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey, Organisation, User
from accounts.permissions import KeyScope, authenticated_user
from catalog.models import Work
from common.apis import SelectorListApi
from common.problems import ApiError, NotFound, problem_response
from datasets import delivery, selectors
from datasets.models import (
    Dataset,
    DatasetItem,
    DatasetKind,
    DatasetLicence,
    Pricing,
    Snapshot,
    SnapshotItem,
    TrainingOptOut,
    Weighting,
)
from datasets.services import contributing, curation, opt_outs, sales, snapshots
from royalties.ledger import InsufficientFunds
from royalties.selectors import prepaid_available

# Serializers -------------------------------------------------------------------------------------------


class DatasetSerializer(serializers.ModelSerializer):
    curator = serializers.SerializerMethodField()
    included_items = serializers.IntegerField(source="included_count", read_only=True, default=0)
    snapshots = serializers.IntegerField(source="snapshot_count", read_only=True, default=0)

    class Meta:
        model = Dataset
        fields = [
            "id",
            "title",
            "kind",
            "description",
            "status",
            "curator",
            "curator_share_bps",
            "uses",
            "currency",
            "pricing",
            "price_minor",
            "weighting",
            "commercial_use",
            "attribution_required",
            "territories",
            "expires_at",
            "terms_version",
            "min_width",
            "min_height",
            "min_duration_ms",
            "min_loudness_dbfs",
            "included_items",
            "snapshots",
            "created_at",
        ]

    def get_curator(self, dataset: Dataset) -> str:
        return dataset.curator.public_name if dataset.curator is not None else "Tribute (platform)"


class ItemSerializer(serializers.ModelSerializer):
    work_title = serializers.CharField(source="work.title", read_only=True)
    contributor = serializers.CharField(source="contributor.public_name", read_only=True)
    text_version = serializers.IntegerField(
        source="text_version.version", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = DatasetItem
        fields = [
            "id",
            "dataset",
            "work",
            "work_title",
            "asset",
            "sha256",
            "contributor",
            "status",
            "reason_code",
            "reason",
            "duplicate_of",
            "weight",
            "text_version",
            "text_sha256",
            "tokens",
            "created_at",
        ]


class SnapshotSerializer(serializers.ModelSerializer):
    licences = serializers.IntegerField(source="licence_count", read_only=True, default=0)
    opt_outs = serializers.IntegerField(source="opt_out_count", read_only=True, default=0)
    for_sale = serializers.SerializerMethodField()

    class Meta:
        model = Snapshot
        fields = [
            "id",
            "dataset",
            "number",
            "terms",
            "terms_version",
            "currency",
            "price_minor",
            "item_count",
            "items_sha256",
            "tokenizer",
            "total_tokens",
            "shards",
            "licences",
            "opt_outs",
            "for_sale",
            "created_at",
        ]

    def get_for_sale(self, snapshot: Snapshot) -> bool:
        return sales.snapshot_sale_problem(snapshot) is None


class SnapshotItemSerializer(serializers.ModelSerializer):
    sha256 = serializers.CharField(source="blob_id")
    work_title = serializers.CharField(source="work.title")
    text_version = serializers.IntegerField(source="text_version.version", allow_null=True, default=None)
    opted_out = serializers.SerializerMethodField()

    class Meta:
        model = SnapshotItem
        fields = [
            "position",
            "item",
            "work",
            "work_title",
            "sha256",
            "offer_version",
            "weight",
            "owners",
            "attribution",
            "text_version",
            "text_sha256",
            "tokens",
            "opted_out",
        ]

    def get_opted_out(self, entry: SnapshotItem) -> str | None:
        recorded = list(entry.opt_outs.all())
        return recorded[0].reason_code if recorded else None


class LicenceSerializer(serializers.ModelSerializer):
    dataset = serializers.IntegerField(source="snapshot.dataset_id")
    snapshot_number = serializers.IntegerField(source="snapshot.number")
    items = serializers.IntegerField(source="snapshot.item_count")
    items_sha256 = serializers.CharField(source="snapshot.items_sha256")
    links_url = serializers.SerializerMethodField()

    class Meta:
        model = DatasetLicence
        fields = [
            "id",
            "licence_id",
            "organisation",
            "dataset",
            "snapshot",
            "snapshot_number",
            "items",
            "items_sha256",
            "price_minor",
            "currency",
            "territory",
            "receipt",
            "links_url",
            "created_at",
        ]

    def get_links_url(self, licence: DatasetLicence) -> str:
        return settings.SITE_URL + reverse("dataset-licence-links", args=[licence.pk])


class OfferingInput(serializers.Serializer):
    currency = serializers.CharField(max_length=3, default="USD")
    price_minor = serializers.IntegerField(min_value=0)
    uses = serializers.ListField(child=serializers.CharField(max_length=16), default=["ai-train"])
    pricing = serializers.ChoiceField(choices=Pricing.choices, default=Pricing.PER_SNAPSHOT)
    weighting = serializers.ChoiceField(choices=Weighting.choices, default=Weighting.ITEMS)
    curator_share_bps = serializers.IntegerField(min_value=0, max_value=9_999, default=0)
    commercial_use = serializers.BooleanField(default=False)
    attribution_required = serializers.BooleanField(default=True)
    territories = serializers.ListField(child=serializers.CharField(max_length=2), default=list)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    min_width = serializers.IntegerField(min_value=0, default=256)
    min_height = serializers.IntegerField(min_value=0, default=256)
    min_duration_ms = serializers.IntegerField(min_value=0, default=3000)
    min_loudness_dbfs = serializers.IntegerField(min_value=-120, max_value=0, default=-50)

    class Meta:
        ref_name = "DatasetOfferingInput"


def _offering(data: serializers.Serializer) -> curation.Offering:
    fields = {
        name: value
        for name, value in data.validated_data.items()
        if name in curation.Offering.__dataclass_fields__
    }
    fields["currency"] = str(fields.get("currency", "USD")).upper()
    return curation.Offering(**fields)


# Datasets ----------------------------------------------------------------------------------------------


class DatasetListCreateApi(SelectorListApi):
    """Datasets you may see (open ones, those with snapshots, yours); create one (creators curate their own;
    staff may create platform-curated ones)."""

    queryset = Dataset.objects.none()
    permission_classes = [IsAuthenticated, KeyScope]
    serializer_class = DatasetSerializer
    ordering_fields = ["created_at", "title"]
    extra_query_params = ("kind",)

    class InputSerializer(OfferingInput):
        title = serializers.CharField(max_length=200)
        kind = serializers.ChoiceField(choices=DatasetKind.choices)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        platform_curated = serializers.BooleanField(default=False)

        class Meta:
            ref_name = "DatasetCreateInput"

    def select(self) -> QuerySet[Dataset]:
        datasets = selectors.datasets_visible_to(user=authenticated_user(self.request))
        kind = self.request.query_params.get("kind")
        return datasets.filter(kind=kind) if kind else datasets

    @extend_schema(
        request=InputSerializer, responses={201: DatasetSerializer}, operation_id="datasets_create"
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = curation.dataset_create(
            user=authenticated_user(request),
            title=data.validated_data["title"],
            kind=data.validated_data["kind"],
            description=data.validated_data["description"],
            platform_curated=data.validated_data["platform_curated"],
            offering=_offering(data),
        )
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailApi(APIView):
    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(responses=DatasetSerializer, operation_id="datasets_retrieve")
    def get(self, request: Request, dataset_id: int) -> Response:
        dataset = selectors.dataset_get_visible(user=authenticated_user(request), dataset_id=dataset_id)
        return Response(DatasetSerializer(dataset).data)

    @extend_schema(request=OfferingInput, responses=DatasetSerializer, operation_id="datasets_terms_update")
    def put(self, request: Request, dataset_id: int) -> Response:
        """Publish new terms (the next terms version); the curator only."""
        user = authenticated_user(request)
        dataset = selectors.dataset_get_visible(user=user, dataset_id=dataset_id)
        data = OfferingInput(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = curation.dataset_terms_update(dataset=dataset, user=user, offering=_offering(data))
        return Response(
            DatasetSerializer(selectors.dataset_get_visible(user=user, dataset_id=dataset.pk)).data
        )


# Items -------------------------------------------------------------------------------------------------


class ItemListCreateApi(SelectorListApi):
    """A dataset's items (the curator sees all, contributors their own too); contribute a work's files."""

    queryset = DatasetItem.objects.none()
    permission_classes = [IsAuthenticated, KeyScope]
    serializer_class = ItemSerializer
    ordering_fields = ["created_at"]
    extra_query_params = ("status",)

    class InputSerializer(serializers.Serializer):
        work = serializers.IntegerField(min_value=1)
        assets = serializers.ListField(
            child=serializers.IntegerField(min_value=1), required=False, max_length=200
        )
        weight = serializers.IntegerField(min_value=1, max_value=1_000_000, default=1)

        class Meta:
            ref_name = "DatasetItemInput"

    def select(self) -> QuerySet[DatasetItem]:
        user = authenticated_user(self.request)
        dataset = selectors.dataset_get_visible(user=user, dataset_id=self.kwargs["dataset_id"])
        items = selectors.items_visible_to(user=user, dataset=dataset)
        wanted = self.request.query_params.get("status")
        return items.filter(status=wanted) if wanted else items

    @extend_schema(
        request=InputSerializer,
        responses={201: ItemSerializer(many=True)},
        operation_id="datasets_items_create",
    )
    def post(self, request: Request, dataset_id: int) -> Response:
        user = authenticated_user(request)
        dataset = selectors.dataset_get_visible(user=user, dataset_id=dataset_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        work = Work.objects.filter(pk=data.validated_data["work"], created_by=user).first()
        if work is None:
            raise NotFound("No such work among the works you manage.", code="work_not_found")
        items = contributing.item_contribute(
            dataset=dataset,
            user=user,
            work=work,
            asset_ids=data.validated_data.get("assets"),
            weight=data.validated_data["weight"],
        )
        return Response(ItemSerializer(items, many=True).data, status=status.HTTP_201_CREATED)


class ItemOptOutApi(APIView):
    """Take your item out of the dataset's future snapshots (sold snapshots keep it, with the opt-out
    recorded against them)."""

    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(request=None, responses=ItemSerializer, operation_id="dataset_items_opt_out")
    def post(self, request: Request, item_id: int) -> Response:
        user = authenticated_user(request)
        item = selectors.item_get_own(user=user, item_id=item_id)
        return Response(ItemSerializer(opt_outs.item_opt_out(item=item, user=user)).data)


class OptOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingOptOut
        fields = ["id", "user", "work", "created_at"]


class TrainingOptOutApi(APIView):
    """Do-not-train flags: on yourself as a creator (omit `work`) or on one of your works."""

    permission_classes = [IsAuthenticated, KeyScope]

    class InputSerializer(serializers.Serializer):
        work = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)

        class Meta:
            ref_name = "TrainingOptOutInput"

    @extend_schema(responses=OptOutSerializer(many=True), operation_id="training_opt_outs_list")
    def get(self, request: Request) -> Response:
        flags = selectors.opt_outs_of(user=authenticated_user(request))
        return Response(OptOutSerializer(flags, many=True).data)

    def _work(self, user: User, work_id: int | None) -> Work | None:
        if work_id is None:
            return None
        work = Work.objects.filter(pk=work_id, created_by=user).first()
        if work is None:
            raise NotFound("No such work among the works you manage.", code="work_not_found")
        return work

    @extend_schema(
        request=InputSerializer, responses={201: OptOutSerializer}, operation_id="training_opt_outs_set"
    )
    def post(self, request: Request) -> Response:
        user = authenticated_user(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        flag = opt_outs.training_opt_out_set(user=user, work=self._work(user, data.validated_data["work"]))
        return Response(OptOutSerializer(flag).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=InputSerializer, responses={204: None}, operation_id="training_opt_outs_clear")
    def delete(self, request: Request) -> Response:
        user = authenticated_user(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        opt_outs.training_opt_out_clear(user=user, work=self._work(user, data.validated_data["work"]))
        return Response(status=status.HTTP_204_NO_CONTENT)


# Snapshots ---------------------------------------------------------------------------------------------


class SnapshotListCreateApi(SelectorListApi):
    """A dataset's snapshots; cut the next one (the curator)."""

    queryset = Snapshot.objects.none()
    permission_classes = [IsAuthenticated, KeyScope]
    serializer_class = SnapshotSerializer

    def select(self) -> QuerySet[Snapshot]:
        dataset = selectors.dataset_get_visible(
            user=authenticated_user(self.request), dataset_id=self.kwargs["dataset_id"]
        )
        return selectors.snapshots_of(dataset=dataset)

    @extend_schema(
        request=None, responses={201: SnapshotSerializer}, operation_id="datasets_snapshots_create"
    )
    def post(self, request: Request, dataset_id: int) -> Response:
        user = authenticated_user(request)
        dataset = selectors.dataset_get_visible(user=user, dataset_id=dataset_id)
        snapshot = snapshots.snapshot_create(dataset=dataset, user=user)
        return Response(
            SnapshotSerializer(selectors.snapshots_of(dataset=dataset).get(pk=snapshot.pk)).data,
            status=status.HTTP_201_CREATED,
        )


class SnapshotDetailApi(APIView):
    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(responses=SnapshotSerializer, operation_id="dataset_snapshots_retrieve")
    def get(self, request: Request, snapshot_id: int) -> Response:
        snapshot = selectors.snapshot_get_visible(user=authenticated_user(request), snapshot_id=snapshot_id)
        return Response(
            SnapshotSerializer(selectors.snapshots_of(dataset=snapshot.dataset).get(pk=snapshot.pk)).data
        )


class SnapshotItemListApi(SelectorListApi):
    """The frozen item list of a snapshot, in order, with any opt-out recorded since."""

    queryset = SnapshotItem.objects.none()
    permission_classes = [IsAuthenticated, KeyScope]
    serializer_class = SnapshotItemSerializer

    def select(self) -> QuerySet[SnapshotItem]:
        snapshot = selectors.snapshot_get_visible(
            user=authenticated_user(self.request), snapshot_id=self.kwargs["snapshot_id"]
        )
        return selectors.snapshot_entries(snapshot=snapshot)


# Licences ----------------------------------------------------------------------------------------------


def _organisation(request: Request, user: User, wanted: int | None) -> Organisation:
    if isinstance(request.auth, ApiKey):
        if request.auth.organisation is None or not request.auth.has_scope("access"):
            raise ApiError(
                "Buying needs an organisation's API key with the `access` scope.",
                code="organisation_key_required",
                status_code=403,
            )
        return request.auth.organisation
    organisations = selectors.organisations_of(user=user)
    found = organisations.filter(pk=wanted).first() if wanted else organisations.first()
    if found is None:
        raise NotFound("Buy for an organisation you belong to.", code="organisation_not_found")
    return found


class LicencePurchaseApi(APIView):
    """Buy a training licence on a snapshot from your organisation's prepaid balance.

    201: the licence with its signed receipt (200 when your organisation already holds it). 402: the
    balance is short (the body says the price, the balance and where to top up). 409: the snapshot is not
    for sale (superseded, stale, expired)."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        organisation = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)
        territory = serializers.RegexField(r"^[A-Za-z]{2}$", required=False, default="")

        class Meta:
            ref_name = "DatasetLicenceInput"

    @extend_schema(
        request=InputSerializer,
        responses={201: LicenceSerializer, 200: LicenceSerializer},
        operation_id="dataset_snapshots_licences_create",
    )
    def post(self, request: Request, snapshot_id: int) -> Response:
        user = authenticated_user(request)
        snapshot = selectors.snapshot_get_visible(user=user, snapshot_id=snapshot_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        organisation = _organisation(request, user, data.validated_data["organisation"])
        try:
            purchase = sales.licence_purchase(
                snapshot=snapshot,
                organisation=organisation,
                user=user,
                territory=data.validated_data["territory"],
            )
        except InsufficientFunds as exc:
            return payment_required(exc, organisation=organisation, snapshot=snapshot)
        return Response(
            LicenceSerializer(purchase.licence).data,
            status=status.HTTP_201_CREATED if purchase.created else status.HTTP_200_OK,
        )


def payment_required(exc: InsufficientFunds, *, organisation: Organisation, snapshot: Snapshot) -> Response:
    balance = prepaid_available(organisation=organisation, currency=snapshot.currency)
    return problem_response(
        402,
        "insufficient_funds",
        "The prepaid balance is not enough for this licence; top it up.",
        extra={
            "price_minor": snapshot.price_minor,
            "currency": snapshot.currency,
            "balance_minor": balance,
            "top_up_url": settings.SITE_URL + reverse("dashboard:balance"),
        },
    )


class LicenceListApi(SelectorListApi):
    """Your organisations' dataset licences."""

    queryset = DatasetLicence.objects.none()
    permission_classes = [IsAuthenticated, KeyScope]
    serializer_class = LicenceSerializer

    def select(self) -> QuerySet[DatasetLicence]:
        return selectors.licences_visible_to(user=authenticated_user(self.request))


class LicenceDetailApi(APIView):
    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(responses=LicenceSerializer, operation_id="dataset_licences_retrieve")
    def get(self, request: Request, licence_id: int) -> Response:
        licence = selectors.licence_get_visible(user=authenticated_user(request), licence_id=licence_id)
        return Response(LicenceSerializer(licence).data)


class LinkSerializer(serializers.Serializer):
    part = serializers.CharField()
    url = serializers.CharField()
    expires_in_s = serializers.IntegerField()

    class Meta:
        ref_name = "DatasetDownloadLink"


class LicenceLinksApi(APIView):
    """Short-lived signed links to the snapshot's manifest and its shards (tar, or JSONL for text)."""

    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(responses=LinkSerializer(many=True), operation_id="dataset_licences_links")
    def get(self, request: Request, licence_id: int) -> Response:
        licence = selectors.licence_get_visible(user=authenticated_user(request), licence_id=licence_id)
        rows = [
            {
                "part": link.part,
                "url": settings.SITE_URL + reverse("dataset-download", args=[link.token]),
                "expires_in_s": link.expires_in_s,
            }
            for link in delivery.links_for(licence=licence)
        ]
        return Response(LinkSerializer(rows, many=True).data)


class DownloadApi(APIView):
    """Download one part through a signed link. Refused (403) when expired, altered or not yours.

    Media snapshots: a JSON Lines manifest and tar shards. Text snapshots: a JSON manifest listing the
    JSONL shards with their SHA-256, and the shards (one record per item: text, licence, provenance)."""

    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(
        responses={
            (200, "application/x-tar"): OpenApiTypes.BINARY,
            (200, "application/jsonl"): OpenApiTypes.BINARY,
            (200, "application/json"): OpenApiTypes.OBJECT,
        },
        operation_id="dataset_downloads_retrieve",
    )
    def get(self, request: Request, token: str) -> HttpResponseBase:
        user = authenticated_user(request)
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        return download_response(token=token, user=user, api_key=api_key)


def download_response(*, token: str, user: User, api_key: ApiKey | None) -> HttpResponseBase:
    """The file a link names, logged (shared by the API and the dashboard)."""
    licence, part = delivery.link_open(token=token, user=user, api_key=api_key)
    name = f"dataset-{licence.snapshot.dataset_id}-snapshot-{licence.snapshot.number}"
    if delivery.is_text(licence.snapshot):
        return _text_download(licence=licence, part=part, user=user, api_key=api_key, name=name)
    if part == delivery.MANIFEST:
        body = delivery.manifest_bytes(licence=licence)
        delivery.download_logged(licence=licence, part=part, user=user, api_key=api_key, size=len(body))
        response = HttpResponse(body, content_type="application/jsonl")
        response["Content-Disposition"] = f'attachment; filename="{name}-manifest.jsonl"'
        return response
    handle = delivery.shard_file(licence=licence, part=part)
    return _shard_response(licence, part, user, api_key, handle, f"{name}-{part}.tar", "application/x-tar")


def _text_download(
    *, licence: DatasetLicence, part: str, user: User, api_key: ApiKey | None, name: str
) -> HttpResponseBase:
    if part == delivery.MANIFEST:
        body = delivery.text_manifest_bytes(licence=licence)
        delivery.download_logged(licence=licence, part=part, user=user, api_key=api_key, size=len(body))
        response = HttpResponse(body, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{name}-manifest.json"'
        return response
    handle = delivery.text_shard_file(licence=licence, part=part)
    return _shard_response(licence, part, user, api_key, handle, f"{name}-{part}.jsonl", "application/jsonl")


def _shard_response(
    licence: DatasetLicence,
    part: str,
    user: User,
    api_key: ApiKey | None,
    handle: IO[bytes],
    filename: str,
    content_type: str,
) -> FileResponse:
    """A shard file as an attachment, its download logged with its size."""
    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(0)
    delivery.download_logged(licence=licence, part=part, user=user, api_key=api_key, size=size)
    return FileResponse(handle, as_attachment=True, filename=filename, content_type=content_type)


# Earnings ----------------------------------------------------------------------------------------------


class ContributionSerializer(serializers.Serializer):
    dataset = serializers.IntegerField(source="dataset.pk")
    title = serializers.CharField(source="dataset.title")
    items = serializers.IntegerField()
    included = serializers.IntegerField()
    excluded = serializers.IntegerField()
    opted_out = serializers.IntegerField()
    snapshots_sold = serializers.IntegerField()
    licences = serializers.IntegerField()
    currency = serializers.CharField()
    earned_minor = serializers.IntegerField(
        help_text="paid to your works, before the platform fee and splits"
    )

    class Meta:
        ref_name = "DatasetContribution"


class ContributionListApi(APIView):
    """Per dataset you contributed to: your items, the snapshots sold, what the sales paid your works."""

    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(responses=ContributionSerializer(many=True), operation_id="dataset_contributions_list")
    def get(self, request: Request) -> Response:
        rows: list[dict[str, Any]] = list(selectors.contributions_of(user=authenticated_user(request)))  # type: ignore[arg-type]
        return Response(ContributionSerializer(rows, many=True).data)
