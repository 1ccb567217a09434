"""The domain: tables, schemas and data functions that know nothing of HTTP or Flask. They
take what they need explicitly (a session, a Redis client) and raise ``core.errors``."""
