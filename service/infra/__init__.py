"""Infrastructure: the clients of one process (engines, Redis), their lifecycle and the
guarded ways to use them (breaker, cache, queue, health checks, mail transport)."""
