"""The partner API (verdicts on media a platform hosts, and the webhooks that follow their claims) and
creators' watches of vendors' output feeds."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey, Organisation, User
from accounts.permissions import authenticated_user
from catalog import partners, watches, webhooks
from catalog.models import PartnerUpload, PartnerWebhook, Watch
from common.apis import SelectorListApi
from common.problems import Forbidden, NotFound
from common.uploads import read_upload


def _organisation(request: Request) -> Organisation:
    """The organisation the partner acts for: its key's, else the user's first."""
    if isinstance(request.auth, ApiKey) and request.auth.organisation is not None:
        return request.auth.organisation
    user: User = authenticated_user(request)
    organisation = Organisation.objects.filter(membership__user=user).order_by("id").first()
    if organisation is None:
        raise Forbidden("The partner API is for organisations' accounts.", code="organisation_required")
    return organisation


class PartnerUploadSerializer(serializers.ModelSerializer):
    licensee = serializers.CharField(source="licensee.username", allow_null=True, default=None)

    class Meta:
        model = PartnerUpload
        fields = ["id", "reference", "sha256", "licensee", "verdict", "created_at"]


class PartnerVerdictListCreateApi(SelectorListApi):
    """Your verdicts, newest first. POST asks for one: a `file` (multipart) or the `url` of a file you
    serve on this machine, with your own `reference` for it and, optionally, the Tribute `licensee` who
    uploaded it to you (their licences count beside yours). The same reference with the same file answers
    the first verdict (200); with another file, 409."""

    queryset = PartnerUpload.objects.none()
    serializer_class = PartnerUploadSerializer
    required_scope = "partner"  # for reading too: a partner key need not have `read`
    quota_scope = "traces"
    parser_classes = [MultiPartParser, JSONParser]
    filterset_fields = ["reference"]

    class InputSerializer(serializers.Serializer):
        reference = serializers.CharField(max_length=200)
        file = serializers.FileField(required=False)
        url = serializers.URLField(required=False, max_length=2000)
        licensee = serializers.CharField(required=False, max_length=150, default="")

        class Meta:
            ref_name = "PartnerVerdictInput"

        def validate(self, attrs: dict) -> dict:
            if ("file" in attrs) == ("url" in attrs):
                raise serializers.ValidationError("Send either a file or its url.", code="file_or_url")
            return attrs

    def select(self) -> QuerySet[PartnerUpload]:
        return PartnerUpload.objects.filter(organisation=_organisation(self.request)).select_related(
            "licensee"
        )

    @extend_schema(
        request={"multipart/form-data": InputSerializer, "application/json": InputSerializer},
        responses={201: PartnerUploadSerializer, 200: PartnerUploadSerializer},
        operation_id="partner_verdicts_create",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        content = read_upload(values["file"]) if "file" in values else partners.fetch_file(values["url"])
        result = partners.verdict_request(
            organisation=_organisation(request),
            user=authenticated_user(request),
            reference=values["reference"],
            data=content,
            licensee_username=values["licensee"],
        )
        return Response(PartnerUploadSerializer(result.upload).data, status=201 if result.created else 200)


class PartnerWebhookSerializer(serializers.ModelSerializer):
    class Meta:
        model = PartnerWebhook
        fields = ["id", "url", "active", "created_at"]


class PartnerWebhookListCreateApi(SelectorListApi):
    """Your webhook endpoints. POST adds one and answers its signing secret, shown this once."""

    queryset = PartnerWebhook.objects.none()
    serializer_class = PartnerWebhookSerializer
    required_scope = "partner"

    class InputSerializer(serializers.Serializer):
        url = serializers.URLField(max_length=500)

        class Meta:
            ref_name = "PartnerWebhookInput"

    class CreatedSerializer(PartnerWebhookSerializer):
        secret = serializers.CharField()

        class Meta(PartnerWebhookSerializer.Meta):
            fields = [*PartnerWebhookSerializer.Meta.fields, "secret"]
            ref_name = "PartnerWebhookCreated"

    def select(self) -> QuerySet[PartnerWebhook]:
        return PartnerWebhook.objects.filter(organisation=_organisation(self.request), active=True)

    @extend_schema(
        request=InputSerializer, responses={201: CreatedSerializer}, operation_id="partner_webhooks_create"
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = webhooks.webhook_create(organisation=_organisation(request), url=data.validated_data["url"])
        body = {**PartnerWebhookSerializer(issued.webhook).data, "secret": issued.secret}
        return Response(body, status=201)


class PartnerWebhookDetailApi(APIView):
    required_scope = "partner"

    @extend_schema(responses={204: None}, operation_id="partner_webhooks_delete")
    def delete(self, request: Request, webhook_id: int) -> Response:
        updated = PartnerWebhook.objects.filter(
            pk=webhook_id, organisation=_organisation(request), active=True
        ).update(active=False)
        if not updated:
            raise NotFound("No such webhook among yours.", code="webhook_not_found")
        return Response(status=204)


class WatchSerializer(serializers.ModelSerializer):
    organisation = serializers.CharField(source="organisation.slug")

    class Meta:
        model = Watch
        fields = ["id", "organisation", "feed_url", "active", "last_scanned_at", "last_error", "created_at"]


class WatchListCreateApi(SelectorListApi):
    """Your watches of vendors' output feeds. POST adds one: the vendor organisation's slug and the URL of
    its feed (a list of file URLs); every 15 minutes its new files are compared with your works, and a
    copy no licence of that vendor covers opens a claim on it."""

    queryset = Watch.objects.none()
    serializer_class = WatchSerializer

    class InputSerializer(serializers.Serializer):
        organisation = serializers.SlugField(max_length=60)
        feed_url = serializers.URLField(max_length=500)

        class Meta:
            ref_name = "WatchInput"

    def select(self) -> QuerySet[Watch]:
        return Watch.objects.filter(owner=authenticated_user(self.request), active=True).select_related(
            "organisation"
        )

    @extend_schema(request=InputSerializer, responses={201: WatchSerializer}, operation_id="watches_create")
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        watch = watches.watch_create(
            owner=authenticated_user(request),
            organisation_slug=data.validated_data["organisation"],
            feed_url=data.validated_data["feed_url"],
        )
        return Response(WatchSerializer(watch).data, status=201)


class WatchDetailApi(APIView):
    @extend_schema(responses={204: None}, operation_id="watches_delete")
    def delete(self, request: Request, watch_id: int) -> Response:
        if not Watch.objects.filter(pk=watch_id, owner=authenticated_user(request), active=True).update(
            active=False
        ):
            raise NotFound("No such watch among yours.", code="watch_not_found")
        return Response(status=204)
