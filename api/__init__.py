"""gridmap's HTTP service (FastAPI): lookup, OGC API – Features, incidents and maps.

Not built yet: the library in ``gridmap/`` is what exists today. The service will be a
``create_app(settings)`` factory here, calling the same library functions as the command line.
"""
