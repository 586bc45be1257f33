"""The peer of ``POST /aigc/api/events/``: a plain, typical DRF + ORM implementation.

It takes the same JSON list of events and the same ``Authorization: Token <secret>`` header,
validates the batch with a DRF serializer (``many=True``) and, in one transaction, finds or
creates each event's visitor (``get_or_create``, once per visitor per request) and writes
one row per event with ``Event.objects.create(...)``. It does not move ``last_seen`` on, which
saves it a query per visitor compared with the app.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from aigc_django.models.tracking import Event, EventKind, Visitor


class EventSerializer(serializers.Serializer):
    visitor = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=EventKind.values)
    item = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    category = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    value = serializers.FloatField(required=False, allow_null=True, default=None)
    properties = serializers.JSONField(required=False, default=dict)
    occurred_at = serializers.DateTimeField(required=False, default=timezone.now)


class PeerEventIngestView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def post(self, request):
        header = request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "token" or not hmac.compare_digest(
            secret.strip().encode(), settings.BENCH_TOKEN.encode()
        ):
            return Response({"error": "The token is not valid."}, status=401)
        if not isinstance(request.data, list) or len(request.data) > 500:
            return Response({"error": "Send a list of at most 500 events."}, status=400)
        serializer = EventSerializer(data=request.data, many=True)
        serializer.is_valid(raise_exception=True)
        visitors: dict = {}
        with transaction.atomic():
            for data in serializer.validated_data:
                vid = data["visitor"]
                if vid not in visitors:
                    visitors[vid], _ = Visitor.objects.get_or_create(
                        id=vid, defaults={"first_seen": data["occurred_at"]}
                    )
                Event.objects.create(
                    visitor=visitors[vid],
                    kind=data["kind"],
                    item_key=data["item"],
                    category_key=data["category"],
                    value=data["value"],
                    properties=data["properties"],
                    occurred_at=data["occurred_at"],
                )
        return Response({"created": len(serializer.validated_data)}, status=status.HTTP_201_CREATED)
