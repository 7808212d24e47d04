"""The connexion integration: what makes connexion serve our handlers the way the contract
says — the request's context (unit of work, clock, caller, access policy), validators, the
WSGI bridge, the resolver, bearer security, problem details, idempotency keys, route limits and
metrics. Handlers import from here; the wiring (`server.app`) installs it."""
