"""Request bodies parsed with orjson, for the routes that take bulk JSON (document writes).

FastAPI reads a JSON body with `json.loads` (~0.3 ms per 768-float vector; orjson ~0.1 ms). orjson
is stricter than the stdlib: it refuses NaN / Infinity literals, lone surrogate escapes and other
encodings than UTF-8. A body it refuses is parsed again by the stdlib exactly as before, so those
values still reach the validators and get their field-naming 422s, and malformed JSON gets
FastAPI's own error. orjson also reads integers beyond 64 bits as floats: when validation meets a
float that may have been one (core.json_numbers), the request is handled again from the stdlib's
reading. The OpenAPI schema, the models and every answer stay as they were.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from core.gc_pause import gc_paused
from core.json_numbers import FLOATS_MAY_BE_INTEGERS, NeedsExactJSON


class FastJSONRequest(Request):
    exact = False  # True: the stdlib's reading only

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            parsed = False
            if not self.exact:
                try:
                    self._json = orjson.loads(body)
                    parsed = True
                except orjson.JSONDecodeError:
                    pass
            if not parsed:
                self._json = json.loads(body)  # the stdlib's reading (and JSONDecodeError for bad JSON)
            FLOATS_MAY_BE_INTEGERS.set(parsed)
        return self._json


class ExactJSONRequest(FastJSONRequest):
    exact = True


class FastJSONRoute(APIRoute):
    """An APIRoute whose handler sees a FastJSONRequest, with the garbage collector held
    (core/gc_pause.py) while it runs."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def fast(request: Request) -> Response:
            token = FLOATS_MAY_BE_INTEGERS.set(False)
            first = FastJSONRequest(request.scope, request.receive)
            try:
                with gc_paused():  # bulk writes allocate a few containers per document
                    try:
                        return await handler(first)
                    except NeedsExactJSON:  # raised while validating, before anything was written
                        again = ExactJSONRequest(request.scope, request.receive)
                        again._body = await first.body()  # consumed from `receive` already
                        return await handler(again)
            finally:
                FLOATS_MAY_BE_INTEGERS.reset(token)

        return fast
