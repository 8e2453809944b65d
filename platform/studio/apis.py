"""Studio API: generators, the wallet, accepting terms, generation jobs, releases and purchases."""

from __future__ import annotations

import uuid
from typing import Any, cast

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey, User
from accounts.permissions import authenticated_user
from catalog import selectors as catalog
from catalog.models import Offer
from common.apis import SelectorListApi
from common.money import Money
from common.problems import Forbidden, NotFound
from common.uploads import read_upload
from media.generators import Generator
from studio import generators, selectors, services
from studio.models import GenerationJob, Purchase, Release, ReleaseApproval


class GeneratorSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    parent_kind = serializers.CharField()
    output_kind = serializers.CharField()
    use_classes = serializers.SerializerMethodField()
    inputs = serializers.SerializerMethodField(
        help_text="name, kind (image, audio or text), label, help and whether each input is required"
    )

    def get_use_classes(self, generator: Generator) -> list[str]:
        return sorted(generator.use_classes)

    def get_inputs(self, generator: Generator) -> list[dict[str, Any]]:
        return [
            {"name": s.name, "kind": s.kind, "label": s.label, "help": s.help, "required": s.required}
            for s in generator.inputs
        ]


class GeneratorListApi(APIView):
    """The generators you can run, with the inputs each takes and the use classes the terms must allow."""

    @extend_schema(responses=GeneratorSerializer(many=True), operation_id="generators_list")
    def get(self, request: Request) -> Response:
        return Response(GeneratorSerializer(list(generators.available().values()), many=True).data)


class WalletSerializer(serializers.Serializer):
    organisation = serializers.CharField(
        allow_null=True, help_text="the wallet's organisation; null until the wallet is first needed"
    )
    currency = serializers.CharField()
    available_minor = serializers.IntegerField()


def dev_top_up_allowed(*, user: User, api_key: object) -> bool:
    """The development top-up makes money from nothing: staff only, from a session, and only in DEBUG."""
    return bool(
        settings.DEBUG and settings.STUDIO_DEV_TOP_UP and user.is_staff and not isinstance(api_key, ApiKey)
    )


class WalletApi(APIView):
    """Your studio wallet: a personal prepaid balance that pays licence fees, per-use prices and purchases."""

    class InputSerializer(serializers.Serializer):
        amount_minor = serializers.IntegerField(min_value=1, max_value=10_000_000)
        currency = serializers.RegexField(
            r"^[A-Za-z]{3}$", default=settings.DEFAULT_CURRENCY, help_text="ISO 4217 code"
        )

        class Meta:
            ref_name = "WalletTopUpInput"

    @extend_schema(responses=WalletSerializer, operation_id="wallet_retrieve")
    def get(self, request: Request) -> Response:
        user = authenticated_user(request)
        wallet = selectors.wallet_of(user=user)  # reading never makes one
        currency = request.query_params.get("currency", settings.DEFAULT_CURRENCY).upper()[:3]
        return Response(
            WalletSerializer(
                {
                    "organisation": wallet.organisation.name if wallet is not None else None,
                    "currency": currency,
                    "available_minor": selectors.wallet_available(user=user, currency=currency),
                }
            ).data
        )

    @extend_schema(request=InputSerializer, responses=WalletSerializer, operation_id="wallet_top_up")
    def post(self, request: Request) -> Response:
        """Development top-up: staff only, from a logged-in session, and only in DEBUG with STUDIO_DEV_TOP_UP
        on (card top-ups arrive with payments)."""
        user = authenticated_user(request)
        if not dev_top_up_allowed(user=user, api_key=request.auth):
            raise Forbidden("Top-ups by card are not available yet.", code="top_up_unavailable")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        currency = data.validated_data["currency"].upper()
        services.wallet_fund(
            user=user,
            amount=Money(data.validated_data["amount_minor"], currency),
            external_ref=f"dev-{uuid.uuid4()}",
            rail="development",
        )
        return self.get(request)


class AcceptanceSerializer(serializers.Serializer):
    grant = serializers.IntegerField(source="grant.pk")
    status = serializers.CharField(source="grant.status")
    created = serializers.BooleanField()
    fee_charged_minor = serializers.IntegerField()
    currency = serializers.CharField(source="grant.currency")


class TermsAcceptApi(APIView):
    """Accept an offer for the studio: your wallet holds the licence and pays its fee (402 if short)."""

    @extend_schema(
        request=None,
        responses={201: AcceptanceSerializer, 200: AcceptanceSerializer},
        operation_id="studio_terms_accept",
    )
    def post(self, request: Request, offer_id: int) -> Response:
        user = authenticated_user(request)
        try:
            offer = catalog.offer_get_readable(user=user, offer_id=offer_id)
        except Offer.DoesNotExist:
            raise NotFound("No such offer.", code="offer_not_found") from None
        acceptance = services.terms_accept(user=user, offer=offer)
        return Response(
            AcceptanceSerializer(acceptance).data,
            status=status.HTTP_201_CREATED if acceptance.created else status.HTTP_200_OK,
        )


class JobSerializer(serializers.ModelSerializer):
    offer = serializers.IntegerField(source="grant.offer_id")
    parent_work = serializers.IntegerField(source="grant.offer.work_id")
    compose_with = serializers.IntegerField(source="compose_grant_id", allow_null=True)
    compose_work = serializers.SerializerMethodField()
    result_work = serializers.IntegerField(source="result_work_id", allow_null=True)
    result_url = serializers.SerializerMethodField()
    inputs = serializers.SerializerMethodField()

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "generator",
            "title",
            "grant",
            "offer",
            "parent_work",
            "compose_with",
            "compose_generator",
            "compose_work",
            "explicit",
            "territory",
            "status",
            "progress",
            "stage",
            "error_code",
            "error",
            "inputs",
            "details",
            "manifest",
            "charged_minor",
            "currency",
            "result_work",
            "result_url",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_compose_work(self, job: GenerationJob) -> int | None:
        return job.compose_grant.offer.work_id if job.compose_grant is not None else None

    def get_result_url(self, job: GenerationJob) -> str | None:
        return f"/api/v1/generation-jobs/{job.pk}/result" if job.result_asset_id else None

    def get_inputs(self, job: GenerationJob) -> dict[str, Any]:
        # The stored file names stay private: the fan sees what they sent.
        return {
            name: (
                {"text": item["text"]}
                if item["kind"] == "text"
                else {
                    "filename": item.get("filename"),
                    "media_type": item.get("media_type"),
                    "sha256": item.get("sha256"),
                }
            )
            for name, item in job.inputs.items()
        }


class JobListCreateApi(SelectorListApi):
    """Your generation jobs, newest first; start one (multipart: `grant`, `generator`, optional `title`,
    `territory` and `explicit` (the fan's declaration, needed by terms that forbid explicit lyrics), and
    one field per input the generator takes). Compose two generators into one job with `compose_with` (a
    second grant: the first generator's result is sung over that work by `compose_generator`, default
    `audio-remix`). Poll the job for `progress`."""

    queryset = GenerationJob.objects.none()
    serializer_class = JobSerializer
    parser_classes = [MultiPartParser, JSONParser]
    filterset_fields = ["status", "generator"]
    ordering_fields = ["created_at"]

    def select(self) -> QuerySet[GenerationJob]:
        return selectors.jobs_of(user=authenticated_user(self.request))

    @extend_schema(
        request={"multipart/form-data": OpenApiTypes.OBJECT},
        responses={201: JobSerializer},
        operation_id="generation_jobs_create",
    )
    def post(self, request: Request) -> Response:
        user = authenticated_user(request)
        fields = self.InputSerializer(data=request.data)
        fields.is_valid(raise_exception=True)
        inputs: dict[str, services.InputFile | str] = {}
        reserved = {
            "grant",
            "generator",
            "title",
            "territory",
            "explicit",
            "compose_with",
            "compose_generator",
        }
        for name, value in cast(dict[str, Any], request.data).items():
            if name in reserved:
                continue
            inputs[name] = (
                value
                if isinstance(value, str)
                else services.InputFile(
                    filename=getattr(value, "name", name) or name, data=read_upload(value)
                )
            )
        job = services.job_create(
            user=user,
            grant_id=fields.validated_data["grant"],
            generator_name=fields.validated_data["generator"],
            inputs=inputs,
            title=fields.validated_data.get("title", ""),
            territory=fields.validated_data.get("territory", ""),
            explicit=fields.validated_data.get("explicit"),
            compose_with=fields.validated_data.get("compose_with"),
            compose_generator=fields.validated_data.get("compose_generator", ""),
        )
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)

    class InputSerializer(serializers.Serializer):
        grant = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
        generator = serializers.CharField(max_length=60)
        title = serializers.CharField(max_length=200, required=False, allow_blank=True)
        territory = serializers.CharField(max_length=2, required=False, allow_blank=True)
        explicit = serializers.BooleanField(
            required=False,
            allow_null=True,
            default=None,
            help_text="whether the lyrics are explicit; terms that forbid explicit lyrics need it (false)",
        )
        compose_with = serializers.IntegerField(
            min_value=1,
            max_value=2**63 - 1,
            required=False,
            allow_null=True,
            default=None,
            help_text="a second grant of yours: the result goes into compose_generator on its work",
        )
        compose_generator = serializers.CharField(
            max_length=60, required=False, allow_blank=True, default="", help_text="default: audio-remix"
        )

        class Meta:
            ref_name = "GenerationJobInput"


class JobDetailApi(APIView):
    @extend_schema(responses=JobSerializer, operation_id="generation_jobs_retrieve")
    def get(self, request: Request, job_id: int) -> Response:
        return Response(
            JobSerializer(selectors.job_get_visible(user=authenticated_user(request), job_id=job_id)).data
        )


class JobResultApi(APIView):
    """The generated file, with its embedded C2PA manifest."""

    @extend_schema(
        responses={200: OpenApiResponse(OpenApiTypes.BINARY)}, operation_id="generation_jobs_result"
    )
    def get(self, request: Request, job_id: int) -> FileResponse:
        job = selectors.job_get_visible(user=authenticated_user(request), job_id=job_id)
        if job.result_asset is None:
            raise NotFound("This job has no result (yet).", code="no_result")
        return _file(
            job.result_asset.blob.storage_name, job.result_asset.filename, job.result_asset.blob.media_type
        )


def _file(storage_name: str, filename: str, media_type: str) -> FileResponse:
    return FileResponse(
        default_storage.open(storage_name, "rb"),
        as_attachment=True,
        filename=filename,
        content_type=media_type,
    )


class ReleaseApprovalSerializer(serializers.ModelSerializer):
    work_title = serializers.CharField(source="work.title")
    owner = serializers.CharField(source="owner.public_name")

    class Meta:
        model = ReleaseApproval
        fields = [
            "id",
            "release",
            "work",
            "work_title",
            "owner",
            "status",
            "reason",
            "created_at",
            "decided_at",
        ]


class ReleaseSerializer(serializers.ModelSerializer):
    title = serializers.CharField(source="work.title")
    released_by = serializers.CharField(source="released_by.public_name")
    purchases = serializers.SerializerMethodField()
    approvals = ReleaseApprovalSerializer(many=True, read_only=True)

    class Meta:
        model = Release
        fields = [
            "id",
            "work",
            "title",
            "released_by",
            "price_minor",
            "currency",
            "status",
            "approvals",
            "purchases",
            "created_at",
            "updated_at",
        ]

    def get_purchases(self, release: Release) -> int | None:
        request = self.context.get("request")
        if request is None or release.released_by_id != getattr(request.user, "pk", None):
            return None
        return release.purchases.count()


class ReleaseListCreateApi(SelectorListApi):
    """Releases on sale, and yours; release one of your works (or change its price) with `work`,
    `price_minor` (0: a free download) and `currency`."""

    queryset = Release.objects.none()
    serializer_class = ReleaseSerializer
    filterset_fields = ["status", "work"]
    ordering_fields = ["created_at", "price_minor"]

    class InputSerializer(serializers.Serializer):
        work = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
        price_minor = serializers.IntegerField(min_value=0, max_value=10_000_000)
        currency = serializers.CharField(max_length=3, default=settings.DEFAULT_CURRENCY)

        class Meta:
            ref_name = "ReleaseInput"

    def select(self) -> QuerySet[Release]:
        return selectors.releases_visible_to(user=authenticated_user(self.request))

    @extend_schema(
        request=InputSerializer, responses={201: ReleaseSerializer}, operation_id="releases_create"
    )
    def post(self, request: Request) -> Response:
        user = authenticated_user(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        work = catalog.work_get_managed(user=user, work_id=data.validated_data["work"])
        release = services.release_set(
            user=user,
            work=work,
            price_minor=data.validated_data["price_minor"],
            currency=data.validated_data["currency"].upper(),
        )
        return Response(
            ReleaseSerializer(release, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class ReleaseDetailApi(APIView):
    @extend_schema(responses=ReleaseSerializer, operation_id="releases_retrieve")
    def get(self, request: Request, release_id: int) -> Response:
        release = selectors.release_get_visible(user=authenticated_user(request), release_id=release_id)
        return Response(ReleaseSerializer(release, context={"request": request}).data)


class ReleaseWithdrawApi(APIView):
    @extend_schema(request=None, responses=ReleaseSerializer, operation_id="releases_withdraw")
    def post(self, request: Request, release_id: int) -> Response:
        user = authenticated_user(request)
        release = selectors.release_get_visible(user=user, release_id=release_id)
        release = services.release_withdraw(user=user, release=release)
        return Response(ReleaseSerializer(release, context={"request": request}).data)


class ReleaseDecideApi(APIView):
    """Approve or refuse a release made from your work under terms that require your approval before
    release (a song in your voice). `reason` is required to refuse; the maker reads it."""

    approve = True

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "ReleaseDecisionInput"

    @extend_schema(request=InputSerializer, responses=ReleaseSerializer, operation_id="releases_decide")
    def post(self, request: Request, release_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticated_user(request)
        release = selectors.release_get_visible(user=user, release_id=release_id)
        release = services.release_decide(
            user=user, release=release, approve=self.approve, reason=data.validated_data["reason"]
        )
        release = selectors.release_get_visible(user=user, release_id=release.pk)
        return Response(ReleaseSerializer(release, context={"request": request}).data)


class ReleaseApproveApi(ReleaseDecideApi):
    approve = True

    @extend_schema(
        request=ReleaseDecideApi.InputSerializer, responses=ReleaseSerializer, operation_id="releases_approve"
    )
    def post(self, request: Request, release_id: int) -> Response:
        return super().post(request, release_id)


class ReleaseRefuseApi(ReleaseDecideApi):
    approve = False

    @extend_schema(
        request=ReleaseDecideApi.InputSerializer, responses=ReleaseSerializer, operation_id="releases_refuse"
    )
    def post(self, request: Request, release_id: int) -> Response:
        return super().post(request, release_id)


class ReleaseApprovalListApi(SelectorListApi):
    """The releases made from your works that wait for (or had) your approval, waiting first."""

    queryset = ReleaseApproval.objects.none()
    serializer_class = ReleaseApprovalSerializer
    filterset_fields = ["status"]

    def select(self) -> QuerySet[ReleaseApproval]:
        return selectors.approvals_of(user=authenticated_user(self.request))


class PurchaseSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Purchase
        fields = ["id", "release", "amount_minor", "currency", "created_at", "download_url"]

    def get_download_url(self, purchase: Purchase) -> str:
        return f"/api/v1/releases/{purchase.release_id}/download"


class ReleasePurchaseApi(APIView):
    """Buy a release from your wallet (once; buying again returns the first purchase; 402 if short).
    Name the price you saw (`price_minor`) to be refused (409) instead of charged if it changed."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ReleasePurchaseInput"

        price_minor = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False)

    @extend_schema(
        request=InputSerializer,
        responses={201: PurchaseSerializer, 200: PurchaseSerializer},
        operation_id="releases_purchase",
    )
    def post(self, request: Request, release_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticated_user(request)
        release = selectors.release_get_visible(user=user, release_id=release_id)
        result = services.release_purchase(
            buyer=user, release=release, expected_price_minor=data.validated_data.get("price_minor")
        )
        return Response(
            PurchaseSerializer(result.purchase).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class ReleaseDownloadApi(APIView):
    """The released file: for its owner, its buyers, and anyone when the release is free."""

    @extend_schema(
        responses={
            (200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The released file."),
            (200, "audio/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The released file."),
        },
        operation_id="releases_download",
    )
    def get(self, request: Request, release_id: int) -> FileResponse:
        user = authenticated_user(request)
        release = selectors.release_get_visible(user=user, release_id=release_id)
        if not selectors.may_download(user=user, release=release):
            raise Forbidden("Buy this release to download it.", code="purchase_required", status_code=402)
        asset = selectors.release_file(release=release)
        if asset is None:
            raise NotFound("The release has no file.", code="no_file")
        return _file(asset.blob.storage_name, asset.filename, asset.blob.media_type)
