"""Typed keys for state kept on the application and on each request."""

from __future__ import annotations

import weakref

from aiohttp import web

from artifactd.events import EventLog
from artifactd.evictor import Evictor
from artifactd.metrics import Metrics
from artifactd.settings import Settings
from artifactd.store.base import Store
from artifactd.web.departures import Departures

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
EVENTS = web.AppKey("events", EventLog)
EVICTOR = web.AppKey("evictor", Evictor)
METRICS = web.AppKey("metrics", Metrics)
DEPARTURES = web.AppKey("departures", Departures)

# Per-request values.
REQUEST_ID = web.RequestKey("request_id", str)
STARTED_AT = web.RequestKey("started_at", float)
# The response whose headers went out (set when it is prepared); weak, so that request and
# response never form a cycle holding the connection after a failed send.
STARTED_RESPONSE: web.RequestKey[weakref.ref[web.StreamResponse]] = web.RequestKey(
    "started_response"
)
# A request whose target aiohttp's pure-Python parser let through but could not make into a
# URL (an authority with raw UTF-8): answered 400, as the C parser does.
UNREADABLE_TARGET = web.RequestKey("unreadable_target", bool)
