"""Background jobs on arq: every job function, what each runs inside, the worker settings and
the supervisor that keeps a worker alive."""
