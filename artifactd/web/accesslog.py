"""One access-log line per request on stderr, as text or JSON."""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from artifactd.web.middlewares import request_id_for

ACCESS_LOGGER = logging.getLogger("artifactd.access")


class _AccessLogger(AbstractAccessLogger):
    json_format = False

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        remote = request.remote or "-"
        fields = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "remote": remote,
            "method": request.method,
            "path": request.raw_path,
            "status": response.status,
            "bytes": response.body_length,
            "duration_ms": round(time_ * 1000, 3),
            "request_id": request_id_for(request),
        }
        if self.json_format:
            self.logger.info(json.dumps(fields))
        else:
            self.logger.info(
                '%s "%s %s" %s %s %.3fms rid=%s',
                remote,
                request.method,
                request.raw_path,
                response.status,
                response.body_length,
                time_ * 1000,
                fields["request_id"],
            )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class TextAccessLogger(_AccessLogger):
    json_format = False


class JsonAccessLogger(_AccessLogger):
    json_format = True


def access_logger_class(log_format: str) -> type[AbstractAccessLogger]:
    return JsonAccessLogger if log_format == "json" else TextAccessLogger
