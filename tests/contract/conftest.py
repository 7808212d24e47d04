"""A real server for the contract's consumers (a browser, a generated SDK): the app served by
uvicorn on a free loopback port, in a thread, on the test session's database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from server.app import create_app
from tests.helpers import make_settings
from tests.served import serve


@dataclass(frozen=True)
class LiveServer:
    """Where the server answers, e.g. ``http://127.0.0.1:41234``."""

    url: str


@pytest.fixture(scope="package")
def live_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The app behind a real uvicorn on 127.0.0.1, rate limits far above the tests' pace;
    stopped afterwards."""
    app = create_app(make_settings(database_url, tmp_path_factory.mktemp("live")))
    try:
        with serve(app) as url:
            yield LiveServer(url=url)
    finally:
        app.app.extensions["charter"].engine.dispose()
