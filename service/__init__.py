"""Newsdesk: a news API on async Flask, served loop-native by Hypercorn.

Package map (one idea per module):

- ``settings``: the typed configuration read from the environment;
- ``app``: ``create_app`` and the Flask subclass that awaits on the server's loop;
- ``asgi``: the ASGI entry point Hypercorn serves; ``adapter``: ASGI to WSGI in greenlets;
- ``bridge``: ``await_`` and ``run_in_greenlet``, the greenlet/event-loop seam;
- ``resources``: engines and the Redis client of one process; ``db``: request sessions;
- ``errors``: the JSON error envelope; ``request_id`` and ``logs``: request ids in log lines;
- ``health``: readiness checks; ``api/``: one blueprint per resource (thin views);
- ``schemas``: pydantic models; ``openapi``: the ``endpoint`` decorator and the document;
- ``models``: tables; data functions without HTTP: ``users``, ``api_keys``, ``articles``;
- ``credentials``, ``passwords``, ``sessions``, ``auth``: who is calling;
- ``ratelimit``: Redis-backed limits and client IPs; ``web``: security headers and CORS;
- ``cache``: the generation-versioned response cache; ``fastpath``: cache hits before Flask;
- ``queue``: enqueueing jobs and the job wrapper; ``jobs``: the arq job functions;
  ``supervisor``: a worker that survives Redis restarts; ``views``: buffered view counts;
  ``processing``: summaries and keywords; ``password_reset`` and ``mail``: reset e-mails;
- ``jsonio``: orjson for Flask; ``seed``: bulk fake articles;
- ``embedded``: local PostgreSQL and Redis servers; ``cli``: ``python -m service ...``.

Contracts: every error is ``{"error": {"code", "message", "details"?, "request_id"}}``;
credentials are ``API-Key: <key>`` or ``Authorization: Bearer <key or session token>``;
lists page by ``page``/``per_page`` or by ``cursor``. Settings: see ``service.core.settings`` and
the README's configuration table.
"""
