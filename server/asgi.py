"""The ASGI entry point for uvicorn: ``uvicorn server.asgi:app``."""

from server.app import create_app, prepare_for_serving

app = prepare_for_serving(create_app())
