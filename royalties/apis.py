"""The ledger's HTTP API: earnings, statements (JSON and CSV), and revenue reported by distributors."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import KeyScope, authenticated_user
from common import currency
from common.apis import SelectorListApi
from common.problems import ApiError
from royalties import reports, selectors, statements
from royalties.models import Receivable, Statement, StatementLine

# Serializers -------------------------------------------------------------------------------------------


class StatementLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = StatementLine
        fields = ["work", "work_title", "source", "kind", "amount_minor"]


class StatementSerializer(serializers.ModelSerializer):
    lines = StatementLineSerializer(many=True, read_only=True)
    csv_url = serializers.SerializerMethodField()

    class Meta:
        model = Statement
        fields = [
            "id",
            "currency",
            "period_start",
            "period_end",
            "opening_minor",
            "earned_minor",
            "other_minor",
            "closing_minor",
            "previous_digest",
            "digest",
            "created_at",
            "lines",
            "csv_url",
        ]

    def get_csv_url(self, statement: Statement) -> str:
        return f"/api/v1/statements/csv?id={statement.pk}"


class ReceivableSerializer(serializers.ModelSerializer):
    arose_at = serializers.DateTimeField(source="sale_at")

    class Meta:
        model = Receivable
        fields = [
            "id",
            "source",
            "source_key",
            "work",
            "amount_minor",
            "currency",
            "arose_at",
            "split_at",
            "status",
            "due_at",
        ]


class ReportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    items = ReceivableSerializer(many=True)


EarningsSerializer = inline_serializer(
    name="Earnings",
    fields={
        "balances": inline_serializer(
            name="EarningsBalance",
            many=True,
            fields={
                "currency": serializers.CharField(),
                "balance_minor": serializers.IntegerField(),
                "held_minor": serializers.IntegerField(),
                "available_minor": serializers.IntegerField(),
            },
        ),
        "by_work": inline_serializer(
            name="EarningsByWork",
            many=True,
            fields={
                "currency": serializers.CharField(),
                "work": serializers.IntegerField(allow_null=True),
                "work_title": serializers.CharField(),
                "source": serializers.CharField(),
                "amount_minor": serializers.IntegerField(),
            },
        ),
    },
)


# Earnings ----------------------------------------------------------------------------------------------


class EarningsApi(APIView):
    """What you have earned: your payable balance per currency, and the credits by work and source."""

    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(responses=EarningsSerializer, operation_id="earnings_retrieve")
    def get(self, request: Request) -> Response:
        return Response(selectors.earnings_of(user=authenticated_user(request)))


# Statements --------------------------------------------------------------------------------------------


class StatementListCreateApi(SelectorListApi):
    """Your statements; issue your next one up to a moment (each starts where the previous ended)."""

    queryset = Statement.objects.none()
    permission_classes = [IsAuthenticated, KeyScope]
    serializer_class = StatementSerializer
    filterset_fields = ["currency"]
    ordering_fields = ["period_end"]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "StatementListCreateInput"

        currency = serializers.ChoiceField(choices=currency.SUPPORTED)
        period_end = serializers.DateTimeField()
        period_start = serializers.DateTimeField(required=False)

    def select(self) -> QuerySet[Statement]:
        return selectors.statements_of(user=authenticated_user(self.request))

    @extend_schema(
        request=InputSerializer, responses={201: StatementSerializer}, operation_id="statements_create"
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        statement = statements.statement_generate(user=authenticated_user(request), **data.validated_data)
        return Response(StatementSerializer(statement).data, status=status.HTTP_201_CREATED)


class StatementCsvApi(APIView):
    """One of your statements as CSV, with its SHA-256 digest and the previous statement's."""

    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(
        parameters=[OpenApiParameter("id", OpenApiTypes.INT, required=True, description="statement id")],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="the statement as CSV")},
        operation_id="statements_csv",
    )
    def get(self, request: Request) -> HttpResponse:
        raw = request.query_params.get("id", "")
        if not raw.isdigit():
            raise ApiError("Name the statement: ?id=<statement id>.", code="validation_error")
        statement = selectors.statement_get_visible(user=authenticated_user(request), statement_id=int(raw))
        response = HttpResponse(statements.statement_csv(statement=statement), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="statement-{statement.pk}.csv"'
        return response


# Reported revenue --------------------------------------------------------------------------------------


class ReportLineSerializer(serializers.Serializer):
    line_id = serializers.CharField(max_length=100)
    work = serializers.IntegerField(min_value=1, max_value=currency.COLUMN_MAX)
    amount_minor = serializers.IntegerField(min_value=1, max_value=currency.max_minor("USD"))
    currency = serializers.ChoiceField(choices=currency.SUPPORTED)
    arose_at = serializers.DateTimeField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not currency.amount_in_bounds(attrs["amount_minor"], attrs["currency"]):
            raise serializers.ValidationError(
                {"amount_minor": f"In {attrs['currency']}, {currency.bound_text(attrs['currency'])}."}
            )
        return attrs


def _report_response(result: reports.ReportResult) -> Response:
    body: dict[str, Any] = ReportResultSerializer(result).data
    return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class RevenueReportCreateApi(APIView):
    """Report sales of works you manage, line by line with the distributor's own line ids. Sending the
    same lines again records nothing new (200); a known line id with other values is a conflict (409)."""

    permission_classes = [IsAuthenticated, KeyScope]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "RevenueReportCreateInput"

        distributor = serializers.CharField(max_length=40)
        lines = ReportLineSerializer(many=True, allow_empty=False)  # at most REPORT_MAX_LINES: the service

    @extend_schema(
        request=InputSerializer,
        responses={201: ReportResultSerializer, 200: ReportResultSerializer},
        operation_id="revenue_reports_create",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        lines = [
            reports.ReportLine(
                line_id=line["line_id"],
                work_id=line["work"],
                amount_minor=line["amount_minor"],
                currency=line["currency"],
                arose_at=line.get("arose_at"),
            )
            for line in data.validated_data["lines"]
        ]
        result = reports.revenue_report_record(
            user=authenticated_user(request), distributor=data.validated_data["distributor"], lines=lines
        )
        return _report_response(result)


class RevenueReportUploadApi(APIView):
    """Upload a distributor's statement as CSV (`line_id, work, amount_minor, currency[, arose_at]`)."""

    permission_classes = [IsAuthenticated, KeyScope]
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "RevenueReportUploadInput"

        distributor = serializers.CharField(max_length=40)
        file = serializers.FileField()

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: ReportResultSerializer, 200: ReportResultSerializer},
        operation_id="revenue_reports_upload",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        if upload.size is not None and upload.size > 5 * 1024 * 1024:
            raise ApiError("A statement file is at most 5 MB.", code="report_too_large", status_code=413)
        lines = reports.report_lines_from_csv(upload.read())
        result = reports.revenue_report_record(
            user=authenticated_user(request), distributor=data.validated_data["distributor"], lines=lines
        )
        return _report_response(result)
