"""The advice lab: ``python -m bench.lab [--quick] [--only claim,claim [--update]]`` (``make
bench`` / ``make bench-quick``; ``make bench-cache`` and the like run one claim). Every
benchmark of the project is a claim here.

Each claim of the Flask scaling guides is a module here with ``plan(lab)`` (how many load
runs it will make, for the progress bar), ``run(lab)`` (the measurements, JSON-ready) and
``section(data, chart)`` (its part of ``docs/ADVICE.md``, and its PNG chart):

- ``serving``: async views and concurrency: five ways to serve the same probes;
- ``pooling``: pool size vs throughput;
- ``dbpath``: one primary-key read through an ORM session, Core in a transaction, Core in
  autocommit and the driver, with the statements PostgreSQL receives for each;
- ``mixed``: a news workload (reads, lists, writes, logins) on one instance, Hypercorn and
  granian with 1 and 2 workers: the highest rate at p99 <= 50 ms;
- ``caching``: Redis cache hit vs miss vs no cache, and vs a bare Quart Redis GET;
- ``queues``: one job per view vs buffered counters;
- ``indexes``: lists and search with and without indexes;
- ``pages``: offset vs cursor on deep pages, the cost of ``COUNT(*)``, and page 1 and a deep
  cursor page on 1,000 articles vs the seeded count;
- ``replica``: a streaming replica for reads, and the lag a reader sees;
- ``scaling``: 1, 2 and 3 Hypercorn instances behind nginx;
- ``metrics``: Prometheus metrics on vs off on a cache hit;
- ``profile``: Newsdesk vs the Flask floor, FastAPI and Quart, and where its time goes.

Everything runs on loopback against servers the lab starts itself (embedded PostgreSQL and
Redis, a replica made with ``pg_basebackup``, nginx), bounded in time; each figure is the
median of ``rounds`` runs (at least 3) with its min and max.
"""
