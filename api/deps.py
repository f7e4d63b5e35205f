"""Dependencies shared by the routes (``Annotated`` aliases, as FastAPI's full-stack template does)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Depends, Query, Request

from api.service import Service
from gridmap.store.base import Version


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def get_version(
    service: ServiceDep,
    version: Annotated[int | None, Query(ge=1, description="boundary version number")] = None,
    date: Annotated[dt.date | None, Query(description="answer as of this day (YYYY-MM-DD)")] = None,
) -> Version:
    """The boundary version a request asks for: by number, as of a date, or the active one."""
    return service.resolve(version=version, on=date)


VersionDep = Annotated[Version, Depends(get_version)]
