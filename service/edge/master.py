"""Hypercorn's workers under a master that lets every one of them finish: ``serve(config)``.

Hypercorn's own master (``hypercorn.run.run``) sets the workers' shared shutdown event on
SIGTERM, but as soon as the first worker has exited it sends SIGTERM to the others, whose
default action ends them at once: requests still in flight there, slow uploads among them,
get no answer, and their lifespan shutdown (closing pools, flushing buffered views) never
runs. This master differs in what it does after the signal:

* SIGTERM or SIGINT sets the shutdown event once (a second signal changes nothing); each
  worker stops accepting, closes idle keep-alive connections, answers what it has received
  (``Connection: close``), runs its lifespan shutdown and exits
  (``service.greenlet_asgi.drain``). The master closes its own copies of the listening
  sockets at once, so the port is closed, and new connections refused, as soon as the
  workers stop accepting (``Master._let_go_of_sockets`` says why).
* The master waits for every worker, up to ``graceful_timeout`` plus ``shutdown_timeout``;
  only a worker still running then is terminated (logged).
* Workers ignore SIGTERM themselves: a signal sent to the whole process group (``kill`` of
  the group, some supervisors) reaches the master, which drives the stop, instead of cutting
  each worker short.
* A worker that exits with status 0 while serving (``max_requests``) is replaced; one that
  fails stops the others the same graceful way, and the master exits non-zero.
* A worker whose master is gone (killed with SIGKILL, which no handler sees) drains and
  exits the same way: an orphan would keep serving, holding the port and its database
  connections, with nobody left to stop it.

The workers are Hypercorn's own serving loop (``worker_serve``) on uvloop or asyncio, one
process each, sharing the listening sockets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from functools import partial
from multiprocessing import get_context
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType

from hypercorn.asyncio.run import _run, worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import load_application

from service.greenlet_asgi import drain

log = logging.getLogger("service.master")


# How often a worker looks at the shutdown event and at whether its master still runs.
CHECK_SECONDS = 0.1


async def _stop_asked(shutdown_event: Event, master: int) -> None:
    """Return once the master sets the shutdown event, or once the master is gone (SIGKILL,
    the OOM killer): the worker ignores SIGTERM, so without this it would serve on, holding
    the port and its connections, with no one to stop it."""
    while not shutdown_event.is_set():
        if os.getppid() != master:
            log.warning("the master process (pid %d) is gone: stopping this worker", master)
            return
        await asyncio.sleep(CHECK_SECONDS)


def _worker(config: Config, sockets: Sockets, shutdown_event: Event) -> None:
    """One worker process: Hypercorn's serving loop until the master's shutdown event, or
    until the master is gone."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the master decides when to stop
    master = os.getppid()
    app = load_application(config.application_path, config.wsgi_max_body_size)

    async def shutdown_trigger() -> None:
        await _stop_asked(shutdown_event, master)
        drain.begin(config.graceful_timeout)
        # Hypercorn closes keep-alive connections it sees idle as soon as this returns, and a
        # request whose bytes have arrived but are not read yet would go with them. Answers
        # say Connection: close from now on; a moment lets those requests be read and begun.
        await asyncio.sleep(drain.quiesce_seconds(config.graceful_timeout))

    loop_factory = None
    if config.worker_class == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    _run(
        partial(worker_serve, app, config, sockets=sockets),
        debug=config.debug,
        shutdown_trigger=shutdown_trigger,
        loop_factory=loop_factory,
    )


class Master:
    """``workers`` processes of ``_worker`` and the signals that stop them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.context = get_context("spawn")
        self.shutdown_event = self.context.Event()
        self.processes: list[BaseProcess] = []
        self.sockets: Sockets | None = None
        self.stopping = False
        self.exit_code = 0

    def _spawn(self, sockets: Sockets) -> None:
        while len(self.processes) < self.config.workers:
            process = self.context.Process(
                target=_worker,
                kwargs={
                    "config": self.config,
                    "sockets": sockets,
                    "shutdown_event": self.shutdown_event,
                },
            )
            process.daemon = False
            process.start()
            self.processes.append(process)

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Start the graceful stop (once)."""
        if self.stopping:
            return
        self.stopping = True
        reason = signal.Signals(signum).name if signum is not None else "a worker failed"
        log.info(
            "%s: stopping %d worker(s) gracefully (up to %.0f s)",
            reason,
            len(self.processes),
            self.config.graceful_timeout,
        )
        self.shutdown_event.set()
        self._let_go_of_sockets()

    def _let_go_of_sockets(self) -> None:
        """Close the master's own copies of the listening sockets. Each worker holds its own
        copy, so the port keeps accepting while they quiesce; once the last worker closes its
        copy the port is closed, and a new connection is refused, which a load balancer
        passes to another instance whatever the request (nginx's ``proxy_next_upstream
        error``). Were the master to keep its copy open until the workers had exited, the
        port would go on listening with no one accepting: the kernel would complete
        connections into the queue, the balancer would send its requests on them, and they
        would be reset when the master exited, after the request was sent (a POST or PATCH
        then fails with 502)."""
        if self.sockets is None:
            return
        for sock in (*self.sockets.secure_sockets, *self.sockets.insecure_sockets):
            sock.close()

    def _reap(self, sockets: Sockets) -> None:
        """Forget exited workers; replace a clean exit while serving, stop on a failure."""
        for process in [p for p in self.processes if p.exitcode is not None]:
            process.join()
            self.processes.remove(process)
            if self.stopping:
                continue
            if process.exitcode == 0:
                log.info("worker %s exited; starting another", process.pid)
            else:
                log.error("worker %s exited with status %s", process.pid, process.exitcode)
                self.exit_code = 1
                self.stop()
        if not self.stopping:
            self._spawn(sockets)

    def run(self) -> int:
        sockets = self.sockets = self.config.create_sockets()
        # Children are spawned with SIGINT ignored (inherited across exec): a Ctrl-C in a
        # terminal reaches the whole group, and only the master must act on it.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self._spawn(sockets)
        finally:
            signal.signal(signal.SIGINT, previous)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.stop)
        while not self.stopping:
            wait([p.sentinel for p in self.processes], timeout=1.0)
            self._reap(sockets)
        self._wait_for_workers()
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()
        return self.exit_code

    def _wait_for_workers(self) -> None:
        deadline = (
            time.monotonic() + self.config.graceful_timeout + self.config.shutdown_timeout + 5
        )
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error(
                    "worker %s still running past the graceful timeout; terminated", process.pid
                )
                process.terminate()
                process.join(5)
                self.exit_code = 1
            elif process.exitcode != 0:
                self.exit_code = 1
        self.processes.clear()
        log.info("all workers stopped")


def serve(config: Config) -> int:
    """Serve ``config``'s application with ``config.workers`` processes (see the module)."""
    return Master(config).run()
