from __future__ import annotations

import hashlib
import logging

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from aigc_django.conf import aigc_settings
from aigc_django.tracking.visitors import read_visitor_cookie

logger = logging.getLogger("aigc_django.api")


def _hashed(value: str) -> str:
    # Never store a raw address or secret, even in a cache.
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class IngestRateThrottle(SimpleRateThrottle):
    """Limits ingest calls per visitor, per token, or per (hashed) client address."""

    scope = "aigc_ingest"
    option = "INGEST_RATE"

    def get_ident(self, request) -> str:
        """The client's address. ``X-Forwarded-For`` is read only when DRF's ``NUM_PROXIES``
        says how many proxies to trust: DRF's own default (``None``) takes the whole header
        as the address, so a client could pick a fresh one, and a fresh budget, per request.
        """
        if api_settings.NUM_PROXIES is None:
            return request.META.get("REMOTE_ADDR") or ""
        return super().get_ident(request)

    def get_rate(self) -> str | None:
        return aigc_settings.API[self.option]

    def allow_request(self, request, view) -> bool:
        # The rate is read per request so that settings changes apply at once.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception as exc:
            # The cache is down: the events are let in (and stored), not refused with a 500.
            logger.warning("Cache unreachable (%s); %s not throttled meanwhile.", exc, self.scope)
            return True

    def get_cache_key(self, request, view) -> str:
        token = getattr(request, "aigc_token", None)
        if token:
            ident = "token:" + _hashed(token)
        elif (visitor_id := read_visitor_cookie(request._request)) is not None:
            # Only a cookie the client sent back: a client that drops cookies would
            # otherwise get a fresh visitor, and a fresh budget, on every request.
            ident = f"visitor:{visitor_id}"
        else:
            ident = "addr:" + _hashed(self.get_ident(request))
        return self.cache_format % {"scope": self.scope, "ident": ident}


class IngestAddressThrottle(IngestRateThrottle):
    """A looser limit per client address for browsers, so that a client cannot escape the
    per-visitor limit by starting new visitors (fresh cookies). Not for token calls."""

    scope = "aigc_ingest_address"
    option = "INGEST_RATE_PER_ADDRESS"

    def get_cache_key(self, request, view) -> str | None:
        if getattr(request, "aigc_token", None):
            return None
        ident = "addr:" + _hashed(self.get_ident(request))
        return self.cache_format % {"scope": self.scope, "ident": ident}
