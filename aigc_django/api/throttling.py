from __future__ import annotations

import hashlib

from rest_framework.throttling import SimpleRateThrottle

from aigc_django.conf import aigc_settings
from aigc_django.tracking.visitors import read_visitor_cookie


class IngestRateThrottle(SimpleRateThrottle):
    """Limits ingest calls per visitor, per token, or per (hashed) client address."""

    scope = "aigc_ingest"

    def get_rate(self) -> str | None:
        return aigc_settings.API["INGEST_RATE"]

    def allow_request(self, request, view) -> bool:
        # The rate is read per request so that settings changes apply at once.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str:
        token = getattr(request, "aigc_token", None)
        if token:
            ident = "token:" + hashlib.sha256(token.encode()).hexdigest()[:32]
        elif (visitor_id := read_visitor_cookie(request._request)) is not None:
            # Only a cookie the client sent back: a client that drops cookies would
            # otherwise get a fresh visitor, and a fresh budget, on every request.
            ident = f"visitor:{visitor_id}"
        else:
            # Never store a raw address, even in a cache.
            ident = "addr:" + hashlib.sha256(self.get_ident(request).encode()).hexdigest()[:32]
        return self.cache_format % {"scope": self.scope, "ident": ident}
