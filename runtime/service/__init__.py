"""siamese-serve: the runtime behind an authenticated HTTP service (FastAPI on uvicorn).

Layout (FastAPI's "Bigger Applications"): `main` builds the app, `dependencies` holds the key
check every route needs, `routers/` has one APIRouter per resource; `engine` runs the library
on a bounded worker pool, `keys` and `audit` keep the key file and the hash-chained log.
Needs the `serve` extra: pip install "siamese-edge[serve]".
"""
