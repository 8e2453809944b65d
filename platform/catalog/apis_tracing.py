"""Trace media against the catalog, and the claims inbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import KeyScope, authenticated_user
from catalog import selectors, tracing
from catalog.models import Claim, ClaimEvent, WorkParent, WorkStatus
from common.apis import SelectorListApi
from common.uploads import read_upload

# Text sent inline to the trace (about 40,000 words); longer texts go as a file.
MAX_TRACE_CHARACTERS = 250_000


class PassagePairSerializer(serializers.Serializer):
    query_start = serializers.IntegerField(help_text="character offset in the text you sent (normalised)")
    query_end = serializers.IntegerField()
    query_text = serializers.CharField()
    source_start = serializers.IntegerField(help_text="character offset in the work's normalised text")
    source_end = serializers.IntegerField()
    source_text = serializers.CharField()
    source_version = serializers.IntegerField(help_text="the text version the passage was found in")

    class Meta:
        ref_name = "TracePassage"


class TraceMatchSerializer(serializers.Serializer):
    work = serializers.IntegerField(source="work.pk")
    title = serializers.CharField(source="work.title")
    work_kind = serializers.CharField(source="work.kind")
    creator = serializers.CharField(source="work.created_by.public_name")
    kind = serializers.CharField(
        source="match.kind", help_text="image, audio or voice; for text, quote or paraphrase"
    )
    score = serializers.FloatField(source="match.score")
    confidence = serializers.FloatField(source="match.confidence", help_text="calibrated probability, 0 to 1")
    region = serializers.ListField(
        source="match.region",
        child=serializers.FloatField(),
        allow_null=True,
        help_text="x, y, width, height of the matched part of the registered image, as fractions",
    )
    mirrored = serializers.BooleanField(source="match.mirrored")
    offset_s = serializers.FloatField(
        source="match.offset_s", allow_null=True, help_text="where in the original"
    )
    time_scale = serializers.FloatField(source="match.time_scale", allow_null=True)
    time_s = serializers.FloatField(
        source="match.time_s",
        allow_null=True,
        help_text="video and animations: the time of the frame that matched best, in seconds",
    )
    overlap = serializers.FloatField(
        source="match.overlap",
        allow_null=True,
        help_text="text quotes: share of the quoted passage's word shingles found in the work",
    )
    passages = PassagePairSerializer(many=True, help_text="text: the matched passages on both sides")
    covered = serializers.BooleanField(help_text="whether you own the work or hold a grant covering it")
    grant = serializers.IntegerField(source="grant.pk", allow_null=True, default=None)
    derived_from = serializers.SerializerMethodField(
        help_text="the matched work's registered parents (a derivative's licensed sources, such as the voice "
        "a studio conversion was made in): work, title, kind and share, published parents only"
    )

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_derived_from(self, match: Any) -> list[dict[str, Any]]:
        links = WorkParent.objects.filter(
            child_id=match.work.pk, parent__status=WorkStatus.PUBLISHED
        ).select_related("parent")
        return [
            {
                "work": link.parent_id,
                "title": link.parent.title,
                "work_kind": link.parent.kind,
                "share_bps": link.share_bps,
            }
            for link in links
        ]


class SkippedStepSerializer(serializers.Serializer):
    step = serializers.CharField(help_text="image, audio, voice, or frame (one frame of a video)")
    code = serializers.CharField(help_text="the problem code the step met, as a refusal would give it")
    reason = serializers.CharField()
    time_s = serializers.FloatField(allow_null=True, help_text="a frame's time in the media, in seconds")


class TraceApi(APIView):
    """What a piece of media or text derives from: the registered works it matches. Send a file (multipart
    field `file`: an image, audio, or a text file) or text itself (JSON `{"text": "..."}`)."""

    parser_classes = [MultiPartParser, JSONParser]
    permission_classes = [IsAuthenticated, KeyScope]
    required_scope = "read"
    quota_scope = "traces"  # traces per day (accounts.ratelimits)

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(required=False)
        text = serializers.CharField(
            required=False, max_length=MAX_TRACE_CHARACTERS, trim_whitespace=False, allow_blank=False
        )

        class Meta:
            ref_name = "TraceInput"

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if ("file" in attrs) == ("text" in attrs):
                raise serializers.ValidationError("Send either a file or a text, not both and not neither.")
            return attrs

    class OutputSerializer(serializers.Serializer):
        media_type = serializers.CharField()
        kind = serializers.CharField(help_text="image, audio, video or text")
        matches = TraceMatchSerializer(many=True)
        skipped = SkippedStepSerializer(
            many=True, help_text="matching steps this media did not allow; the matches are the others'"
        )
        manifest = serializers.JSONField(
            allow_null=True,
            help_text="the C2PA manifest the file carries (signer, AI marker, licence), or null",
        )

        class Meta:
            ref_name = "TraceResult"

    @extend_schema(
        request={"multipart/form-data": InputSerializer, "application/json": InputSerializer},
        responses=OutputSerializer,
        operation_id="trace",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        as_text = "text" in data.validated_data
        if as_text:
            content = data.validated_data["text"].encode("utf-8")
        else:
            content = read_upload(data.validated_data["file"])
        report = tracing.trace_report(data=content, user=authenticated_user(request), text_only=as_text)
        manifest = tracing.manifest_of(data=content, info=report.info)
        return Response(
            self.OutputSerializer(
                {
                    "media_type": report.info.media_type,
                    "kind": report.info.kind,
                    "matches": report.matches,
                    "skipped": report.skipped,
                    "manifest": manifest,
                }
            ).data
        )


class ClaimEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.public_name", allow_null=True, default=None)

    class Meta:
        model = ClaimEvent
        fields = ["kind", "actor", "decision", "statement", "created_at"]


class ClaimSerializer(serializers.ModelSerializer):
    work_title = serializers.CharField(source="work.title")
    respondent = serializers.CharField(source="respondent.public_name")
    subject_asset = serializers.IntegerField(source="subject_asset.pk", allow_null=True, default=None)
    subject_output = serializers.IntegerField(source="subject_output_id", allow_null=True, default=None)
    dispute_deadline = serializers.SerializerMethodField()
    events = ClaimEventSerializer(many=True, read_only=True)

    def get_dispute_deadline(self, claim: Claim) -> datetime | None:
        return tracing.dispute_deadline(claim)

    class Meta:
        model = Claim
        fields = [
            "id",
            "work",
            "work_title",
            "respondent",
            "subject_asset",
            "subject_sha256",
            "match_kind",
            "score",
            "confidence",
            "evidence",
            "status",
            "decision",
            "resolution",
            "resolved_at",
            "appealed",
            "decided_at",
            "dispute_deadline",
            "subject_output",
            "charge",
            "charge_use",
            "charge_minor",
            "charge_currency",
            "created_at",
            "updated_at",
            "events",
        ]


class ClaimListApi(SelectorListApi):
    """Claims on your works and claims against you; the operator sees all. POST files a claim by hand:
    your registered work, someone else's published file that copies it, and your evidence."""

    queryset = Claim.objects.none()
    serializer_class = ClaimSerializer
    quota_scope = "traces"  # filing a claim runs a trace: counted with them (reading the list is not)
    filterset_fields = ["status", "decision", "work"]
    ordering_fields = ["created_at", "confidence"]

    class InputSerializer(serializers.Serializer):
        work = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
        asset = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
        statement = serializers.CharField(max_length=5000)

        class Meta:
            ref_name = "ClaimFileInput"

    def select(self) -> QuerySet[Claim]:
        return selectors.claims_visible_to(user=authenticated_user(self.request))

    @extend_schema(request=InputSerializer, responses={201: ClaimSerializer}, operation_id="claims_file")
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        claim = tracing.claim_file(
            claimant=authenticated_user(request),
            work_id=values["work"],
            asset_id=values["asset"],
            statement=values["statement"],
        )
        response = claim_response(claim)
        response.status_code = 201
        return response


class ClaimDetailApi(APIView):
    @extend_schema(responses=ClaimSerializer, operation_id="claims_retrieve")
    def get(self, request: Request, claim_id: int) -> Response:
        claim = selectors.claim_get_visible(user=authenticated_user(request), claim_id=claim_id)
        return Response(ClaimSerializer(claim).data)


def claim_response(claim: Claim) -> Response:
    """The claim as its owner sees it now, after a change."""
    return Response(
        ClaimSerializer(selectors.claims_visible_to(user=claim.work.created_by).get(pk=claim.pk)).data
    )


class ClaimDisputeApi(APIView):
    """The party the claim is against disputes it with a statement."""

    class InputSerializer(serializers.Serializer):
        statement = serializers.CharField(max_length=5000)

        class Meta:
            ref_name = "ClaimDisputeInput"

    @extend_schema(request=InputSerializer, responses=ClaimSerializer, operation_id="claims_dispute")
    def post(self, request: Request, claim_id: int) -> Response:
        user = authenticated_user(request)
        claim = selectors.claim_get_visible(user=user, claim_id=claim_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return claim_response(
            tracing.claim_dispute(claim=claim, user=user, statement=data.validated_data["statement"])
        )


class ClaimAppealApi(APIView):
    """The party an operator's resolution went against appeals it, once, with a statement."""

    class InputSerializer(serializers.Serializer):
        statement = serializers.CharField(max_length=5000)

        class Meta:
            ref_name = "ClaimAppealInput"

    @extend_schema(request=InputSerializer, responses=ClaimSerializer, operation_id="claims_appeal")
    def post(self, request: Request, claim_id: int) -> Response:
        user = authenticated_user(request)
        claim = selectors.claim_get_visible(user=user, claim_id=claim_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return claim_response(
            tracing.claim_appeal(claim=claim, user=user, statement=data.validated_data["statement"])
        )
