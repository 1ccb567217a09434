"""A WSGI app (Flask) served as an ASGI 3 application, each request in a greenlet on the
server's own event loop (``adapter.GreenletASGI``).

Self-contained: it imports nothing of the rest of ``service`` (an import-linter contract says
so), so it could be published on its own. What an application adds (how request ids are
chosen and where they are kept, the body of an error answered outside the app, a count of
request bodies cut for their rate) it passes in as ``hooks.Hooks``."""
