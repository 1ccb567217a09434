"""The web layer: the Flask app, its request context, and everything HTTP (statuses,
headers, auth, rate-limit headers, HTTP caching, OpenAPI, blueprints)."""
