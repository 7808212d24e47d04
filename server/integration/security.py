"""Bearer authentication for connexion: verifies the access token before any handler runs,
and checks on every authenticated request that the token's session is still open. The same
bearer scheme takes API keys (``chk_…``, `services.api_keys`): told apart by their prefix, they
are looked up, and their scopes checked, before the handler (`server.integration.context`).
So do visitor tokens of public chatbots (``chv_…``, `services.public_chatbots`): handed on
as such, they open only the `x-access: visitor` operations (`services.access.authorize`)."""

from __future__ import annotations

import functools
from typing import Any

from connexion.security import SECURITY_HANDLERS, BearerSecurityHandler

from server.integration.request_context import current_state
from services.api_keys import looks_like_key, well_formed_key
from services.errors import InvalidToken
from services.public_chatbots import VISITOR_TOKEN_PREFIX, well_formed_visitor_token
from services.tokens import TokenIssuer


def security_map(tokens: TokenIssuer) -> dict[str, type]:
    """Connexion's `security_map` with our bearer check, so the contract needs no
    ``x-bearerInfoFunc`` naming Python code.

    An API key (``chk_…``) of the right shape is handed on as ``token_info["api_key"]``:
    finding it is a database read, done where the session check is, before the handler; one of
    another shape is refused here. An access token's signature, algorithm, type, issuer,
    audience and expiry are verified (pure CPU, no I/O: it runs on the event loop) and its
    claims handed to the app as ``token_info``; `server.app` then rejects a token whose
    session has ended (one indexed query).
    """

    def verify_access_token(token: str) -> dict[str, Any] | None:
        if looks_like_key(token):  # read from the database by `context.load_principal`, in the handler's thread
            return {"sub": "api_key", "api_key": token} if well_formed_key(token) else None
        if token.startswith(VISITOR_TOKEN_PREFIX):  # the same, for the visitor operations only
            return {"sub": "visitor", "visitor_token": token} if well_formed_visitor_token(token) else None
        try:
            claims = tokens.verify(token)
        except InvalidToken:
            return None  # connexion answers 401, turned into problem+json by server.integration.problems
        state = current_state()
        if state is not None:  # for the access log, even if validation then refuses the request
            state.user_id = str(claims.user_id)
        return {"sub": str(claims.user_id), "claims": claims}

    class AccessTokenHandler(BearerSecurityHandler):
        def _resolve_func(self, security_scheme: dict) -> Any:
            return verify_access_token

        # Connexion asks, on every request, whether the check takes `required_scopes` or
        # `request`, with inspect.signature (about 4 % of a request's CPU; issue 13). The
        # answer for a function never changes: ask once per function and keyword.
        _accepts_kwarg = staticmethod(functools.cache(BearerSecurityHandler._accepts_kwarg))

    return {**SECURITY_HANDLERS, "bearer": AccessTokenHandler}
