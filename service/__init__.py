"""Newsdesk: a news API on async Flask, served loop-native by Hypercorn.

Package map (one idea per module):

- ``settings``: the typed configuration read from the environment;
- ``app``: ``create_app`` and the Flask subclass that awaits on the server's loop;
- ``asgi``: the ASGI entry point Hypercorn serves; ``adapter``: ASGI to WSGI in greenlets;
- ``bridge``: ``await_`` and ``run_in_greenlet``, the greenlet/event-loop seam;
- ``resources``: engines and the Redis client of one process; ``db``: request sessions;
- ``errors``: the JSON error envelope; ``request_id`` and ``logs``: request ids in log lines;
- ``health``: readiness checks; ``api/``: one blueprint per resource;
- ``embedded``: local PostgreSQL and Redis servers; ``cli``: ``python -m service ...``.
"""
