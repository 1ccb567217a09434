"""The fault suite: ``python -m bench.faults`` (``make faults``).

Newsdesk's own servers, started here in a temporary directory on loopback (PostgreSQL,
Redis, ``python -m service serve`` with two workers, ``python -m service worker``), a few
thousand seeded articles and a load generator of its own (``bench.faults.load``); then each
fault of ``bench.faults.cases`` under that load: PostgreSQL stopped, Redis killed, SIGTERM to
the API, the job worker killed during view flushes, slow request bodies, an event loop held
while wrong-password logins arrive. One table (``bench.faults.report``), printed and written
to ``docs/FAULTS.md``; exit status 1 when a must-hold check failed. Bounded: about two
minutes on two busy cores.
"""
