"""Connexion's per-request work on a Flask operation, done once per operation.

`connexion.apps.flask.FlaskOperation` (connexion 3.x) builds its decorator chain on every call:
its ``fn`` property makes a new `FlaskDecorator`, whose wrapper then builds the parameter and
response decorators — ``inspect.signature`` of the handler included — and a new URI parser from
the operation's parameters, all for each request (issue 13 measured it at about 5 % of a
request's CPU). None of it depends on the request: the handler, the decorators and the
operation a view serves are fixed at start-up. `prepare_operations` swaps each connexion view
of a Flask app for a `PreparedOperation` that builds the chain once and then only builds the
request; connexion still parses, validates and converts every parameter exactly as before.

Private API touched: ``FlaskOperation._fn``, ``.pythonic_params``, ``.jsonifier`` and
`connexion.decorators.main.FlaskDecorator`'s ``decorate``, ``framework`` and ``uri_parser``
(the parts its own ``__call__`` uses). `tests/server/test_prepared_operations.py` fails if
connexion changes them.
"""

from __future__ import annotations

import functools
from typing import Any

import flask
from connexion.apps.flask import FlaskOperation
from connexion.decorators.main import FlaskDecorator


class PreparedOperation:
    """A connexion Flask operation with its decorator chain built once.

    Args:
        operation: the view connexion registered for one operation.
    """

    def __init__(self, operation: FlaskOperation) -> None:
        self._decorator = FlaskDecorator(pythonic_params=operation.pythonic_params, jsonifier=operation.jsonifier)
        self._decorated = self._decorator.decorate(operation._fn)
        self._uri_parser: Any = None  # made on the first request: it reads the operation from connexion's context
        self.operation_id = operation.operation_id
        functools.update_wrapper(self, operation._fn)

    def __call__(self, *args: Any, **kwargs: Any) -> flask.Response:
        """Serve one request, as `FlaskOperation.__call__` would."""
        parser = self._uri_parser
        if parser is None:  # two first requests at once each make one: the same, harmlessly
            parser = self._uri_parser = self._decorator.uri_parser
        return self._decorated(self._decorator.framework.get_request(uri_parser=parser))


def prepare_operations(flask_app: flask.Flask) -> int:
    """Replace every `FlaskOperation` view of `flask_app` by a `PreparedOperation`; returns
    how many were replaced. Call after connexion has registered the views (it does when its
    middleware stack is built) and before anything wraps them."""
    replaced = 0
    for endpoint, view in list(flask_app.view_functions.items()):
        if isinstance(view, FlaskOperation):
            flask_app.view_functions[endpoint] = PreparedOperation(view)
            replaced += 1
    return replaced
