"""ASGI app factories for the benchmarks (``uvicorn --factory bench.apps:<name>``), and the
references figures are compared with: a bare ASGI hello (the ceiling of this machine), a stock
connexion `FlaskApp` hello with request and response validation, and the FastAPI twin of the
task page and task creation (`bench.reference.twin`)."""

from __future__ import annotations

from pathlib import Path

from server.app import create_app, prepare_for_serving

REFERENCE = Path(__file__).resolve().parent / "reference"
HELLO_BODY = b'{"message":"hello"}'


def bare_asgi():
    """The ceiling: an ASGI callable answering a fixed JSON body, no framework at all."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"19")],
            }
        )
        await send({"type": "http.response.body", "body": HELLO_BODY})

    return app


def hello() -> dict[str, str]:
    """The stock reference's handler."""
    return {"message": "hello"}


def stock_connexion():
    """Stock connexion 3: a FlaskApp with one validated GET, default everything else."""
    import connexion

    app = connexion.FlaskApp(__name__, specification_dir=str(REFERENCE))
    app.add_api("hello.yaml", validate_responses=True, strict_validation=True)
    return app


def fastapi_twin():
    """The FastAPI twin (`bench.reference.twin`); its settings are read from the environment on import."""
    from bench.reference.twin import app

    return app


def with_edge():
    """The service as deployed (as `server.asgi` builds it): the whole edge middleware stack in
    front of connexion."""
    return prepare_for_serving(create_app())


def without_edge():
    """The same service with no edge middleware: connexion, validation and handlers only."""
    return prepare_for_serving(create_app(edge=False))
