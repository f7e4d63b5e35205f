"""``GET /lookup`` without the framework, for the plain requests that are nearly all of them.

:class:`FastLookup` sits in front of the whole application (outside even Starlette's error
middleware) and answers a request itself only when it is exactly the common case:

* ``GET /lookup`` with no body headers, and a query of ``lon``, ``lat`` and optionally ``crs``,
  each once, with ``lon``/``lat`` written as plain decimal numbers;
* the active version is known and its index is built (no store query, no build, no waiting);
* the point is valid and in a grid.

Everything else — other paths and methods, ``version``/``date``, repeated or unknown parameters,
bad or missing numbers, out-of-range points, unknown CRSs, a point in no grid, any exception —
goes to the FastAPI application untouched, which answers it as it always has (problem details,
status codes, the OpenAPI document). A declined request costs the few microseconds it took to
decline, plus, at worst, one scalar raster lookup.

What it answers is what the FastAPI route answers, byte for byte: the same
:meth:`~gridmap.lookup.LookupIndex.find` result (the route's ``answer`` is ``find`` plus the
error for a point in no grid), rendered by the same :func:`api.routes.lookup.render`, with the
same two headers a Starlette ``Response`` sets. Skipping Starlette's routing, FastAPI's parameter
solving and the middleware stack is most of what a lookup cost over HTTP.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from api.routes.lookup import render
from api.service import Service

#: Numbers as pydantic reads them into the route's ``float`` parameters, in the forms a client
#: writes them; anything fancier (``1_0``, ``inf``, spaces, other digits) is left to the route.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_PARAMS = frozenset(("lon", "lat", "crs"))
# A request with a body, or with a key (which is checked, so a revoked key answers 401 even where
# no key is needed), goes to the application.
_BODY_HEADERS = (b"content-length", b"transfer-encoding", b"authorization")
_JSON = (b"content-type", b"application/json")


class FastLookup:
    """ASGI: answer plain ``GET /lookup`` requests from the active index, pass on the rest."""

    def __init__(self, app, state, path: str = "/lookup"):
        self.app = app
        self.state = state  # the application's state: its ``service`` is read per request
        self.path = path

    async def __call__(self, scope, receive, send):
        if (scope["type"] == "http" and scope["path"] == self.path and scope["method"] == "GET"
                and not scope.get("root_path")):
            body = self.answer(scope)
            if body is not None:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", str(len(body)).encode("latin-1")),
                                        _JSON]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def answer(self, scope) -> bytes | None:
        """The response body for a request this path takes, else None (the app answers it)."""
        query = scope["query_string"]
        if not query:
            return None
        for name, _ in scope["headers"]:
            if name in _BODY_HEADERS:  # the body limit and the like stay the app's business
                return None
        params = {}
        for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if key not in _PARAMS or key in params:
                return None
            params[key] = value
        lon, lat = params.get("lon"), params.get("lat")
        if lon is None or lat is None or not _NUMBER.fullmatch(lon) \
                or not _NUMBER.fullmatch(lat):
            return None
        service: Service = self.state.service
        if service.settings.access.enabled and not service.settings.access.public_lookup:
            return None  # a key is needed: the route checks it
        version = service.active_nowait()  # keeps the background refresh going, as the route does
        if version is None:
            return None
        index = service.cached_index(version)
        if index is None:
            return None
        try:
            found = index.find(float(lon), float(lat), params.get("crs", "wgs84"))
            return None if found is None else render(found)
        except Exception:  # noqa: BLE001 - the route answers it, with the right problem
            return None
