"""arq's ``Worker``, taking its jobs in one Redis round trip per poll instead of four per job.

Each poll, arq reads up to ``queue_read_limit`` job ids from the head of its queue and, for
each one, asks Redis whether it may start it: WATCH the job's in-progress key, EXISTS, ZSCORE,
then MULTI/PSETEX/EXEC, four round trips, also for the jobs it is already running (a running
job stays in the queue until it finishes). On a busy bulk worker that was the largest single
cost of its event loop (11% of its samples, more than its reads from PostgreSQL), loop time
taken from the jobs themselves.

``QueueWorker.start_jobs`` keeps arq's rule and state and changes only how the rule is
checked: one Lua script, atomic in Redis as arq's optimistic transaction is, takes up to as
many jobs as the worker has free slots (those whose score is due and which nobody runs) and
marks each in progress for ``in_progress_timeout_s``; ids this worker runs itself are dropped
first. Starting a taken job is arq's own ``run_job``, and the counters and semaphore are arq's.
It relies on arq 0.28's ``Worker`` internals (``sem``, ``job_counter``, ``tasks``,
``run_job``), pinned in ``requirements/``; ``tests/jobs/test_queue_worker.py`` pins the
behaviour (several workers on one queue, deferred jobs, free slots).
"""

from __future__ import annotations

from typing import Any

from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker, get_kwargs

# KEYS: the queue (a sorted set of job ids by due time), the in-progress key prefix.
# ARGV: now (ms), in-progress TTL (ms), how many to take, then candidate job ids in order.
# Returns id, score, id, score ... of the jobs taken.
_TAKE = """
local now, ttl, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local taken = {}
for i = 4, #ARGV do
  if #taken >= 2 * want then break end
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now and redis.call('EXISTS', KEYS[2] .. id) == 0 then
    redis.call('PSETEX', KEYS[2] .. id, ttl, '1')
    taken[#taken + 1] = id
    taken[#taken + 1] = score
  end
end
return taken
"""


class QueueWorker(Worker):
    _take: Any = None
    # True while jobs are being taken: from the take script's call until every job it claimed
    # has its task. A stop that comes meanwhile waits for those jobs too
    # (``service.jobs.supervisor``): they are marked in progress already.
    taking = False

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        free = self.max_jobs - self.job_counter
        candidates = [j for j in job_ids if j.decode() not in self.tasks]
        if free <= 0 or not candidates:
            return
        if self._take is None:
            self._take = self.pool.register_script(_TAKE)
        self.taking = True
        try:
            taken = await self._take(
                keys=[self.queue_name, in_progress_key_prefix],
                args=[timestamp_ms(), int(self.in_progress_timeout_s * 1000), free, *candidates],
            )
            for job_id_b, score in zip(taken[::2], taken[1::2], strict=True):
                await self.sem.acquire()  # free: at most max_jobs - job_counter were taken
                self.job_counter += 1
                job_id = job_id_b.decode()
                task = self.loop.create_task(self.run_job(job_id, int(float(score))))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task
        finally:
            self.taking = False


def create_worker(settings_cls: Any, **kwargs: Any) -> QueueWorker:
    """``arq.worker.create_worker``, making a ``QueueWorker``."""
    return QueueWorker(**{**get_kwargs(settings_cls), **kwargs})
