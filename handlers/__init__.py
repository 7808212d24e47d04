"""The HTTP edge: one module per OpenAPI tag, one function per operationId (in snake_case).

A handler reads its arguments, calls one service function and shapes the answer; it holds
no query and no business rule, and never catches domain errors.
"""
