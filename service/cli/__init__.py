"""Command line and local tooling: ``python -m service ...``, seeding, embedded servers."""
