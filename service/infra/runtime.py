"""One ``Runtime`` per process: everything the process holds, built from ``Settings``.

arq's ``ctx`` is the model: the API's ASGI lifespan (``service.asgi``) and the worker's
``on_startup``/``on_shutdown`` (``service.jobs.worker``) each make one ``Runtime`` from the
settings they are given, ``start()`` it on the process's event loop and ``close()`` it at
shutdown. Nothing of it exists at import time. It holds:

- tracing, turned on when ``OTEL_*`` asks for it (``service.infra.tracing``);
- the ``Resources`` (engines, Redis clients, the cache), started on the running loop;
- the loop lag monitor its Redis guard reads (the API's; ``loop_lag=True``);
- the metrics sampler and the cache's lookup counts, when ``METRICS_ENABLED``;
- the parts a process adds of its own (``Part``: the API's view counter, the worker's CPU
  pool), started after the resources and stopped before they close, in reverse order.
"""

from __future__ import annotations

from typing import Protocol

from service.core.settings import Settings
from service.infra import tracing
from service.infra.periodic import Background
from service.infra.resources import Resources
from service.infra.sampler import instrument, sampler


class Part(Protocol):
    """Something a process runs on top of its resources, from ``start()`` to ``close()``."""

    async def start(self) -> object: ...

    async def close(self) -> None: ...


class Runtime:
    """What one process holds, from ``start()`` (on its event loop) until ``close()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        application_name: str,
        service_name: str,
        loop_lag: bool = False,
    ) -> None:
        self.settings = settings
        self.service_name = service_name
        self.resources = Resources(settings, application_name=application_name)
        self._loop_lag = loop_lag
        self.tracing: tracing.Tracing | None = None
        self._sampler: Background | None = None
        if settings.metrics_enabled:
            self._sampler = sampler(self.resources, settings.metrics_sample_seconds)
        self._parts: list[Part] = []
        self._started: list[Part] = []

    @property
    def started(self) -> bool:
        return self.resources.started

    def trace(self, given: tracing.Tracing | None = None) -> tracing.Tracing:
        """Tracing, turned on if ``OTEL_*`` asks for it (decided once; ``given`` instead, by
        tests); the API calls it before wrapping its app, ``start()`` calls it too. Its
        resources carry it, for the jobs they enqueue."""
        if self.tracing is None:
            self.tracing = given or tracing.start(self.service_name)
            self.resources.tracing = self.tracing
        return self.tracing

    def add(self, part: Part) -> None:
        """Start ``part`` with the runtime (after the resources), close it before them."""
        self._parts.append(part)

    async def attach(self, part: Part) -> None:
        """Start ``part`` now (the runtime started), close it with the runtime."""
        await part.start()
        self._started.append(part)

    async def start(self) -> None:
        """Tracing, resources, loop lag, the added parts, then the metrics sampler."""
        self.trace()
        await self.resources.start()
        if self._loop_lag:
            self.resources.guard.lag.start()  # Redis timeouts discount this loop's own lag
        for part in self._parts:
            await self.attach(part)
        if self._sampler is not None:
            instrument(self.resources)
            self._sampler.start()

    async def close(self) -> None:
        """Everything ``start()`` started, in reverse order; safe to call twice."""
        if self._sampler is not None:
            await self._sampler.stop()
        while self._started:
            await self._started.pop().close()
        if self._loop_lag:
            await self.resources.guard.lag.stop()
        await self.resources.close()
        if self.tracing is not None:
            self.tracing.shutdown()  # its last spans flushed
            self.tracing = None
