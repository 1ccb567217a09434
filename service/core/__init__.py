"""Core: what every layer shares and nothing of ours is imported by (settings, errors, Redis
keys, types, request ids, logging)."""
