"""service.infra.health.RecentResult: a check's result reused while young, one check in flight
for any number of callers, a failure never kept. (tests/web/api/test_health.py shows the same
through a live server's /readyz.)"""

from __future__ import annotations

import asyncio

from service.infra.health import RecentResult


class Check:
    """A check that counts its runs and takes ``seconds`` (a real sleep on the loop)."""

    def __init__(self, seconds: float = 0.05, fail: bool = False) -> None:
        self.runs = 0
        self.seconds = seconds
        self.fail = fail

    async def __call__(self) -> int:
        self.runs += 1
        await asyncio.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("dependency check broke")
        return self.runs


async def test_concurrent_callers_share_the_check_in_flight() -> None:
    recent: RecentResult[int] = RecentResult()
    check = Check()
    results = await asyncio.gather(*(recent.get(check, 0) for _ in range(100)))
    assert check.runs == 1 and results == [1] * 100
    # max_age 0 keeps nothing: the next call, after the run ended, checks again.
    assert await recent.get(check, 0) == 2


async def test_a_result_is_reused_while_younger_than_max_age() -> None:
    recent: RecentResult[int] = RecentResult()
    check = Check(seconds=0)
    assert [await recent.get(check, 0.3) for _ in range(5)] == [1] * 5
    await asyncio.sleep(0.3)
    assert await recent.get(check, 0.3) == 2


async def test_a_caller_that_gives_up_does_not_cancel_the_check_for_the_others() -> None:
    recent: RecentResult[int] = RecentResult()
    check = Check(seconds=0.2)
    impatient = asyncio.ensure_future(recent.get(check, 1))
    patient = asyncio.ensure_future(recent.get(check, 1))
    await asyncio.sleep(0.05)
    impatient.cancel()
    assert await patient == 1
    assert impatient.cancelled() and check.runs == 1


async def test_a_failed_check_is_not_kept() -> None:
    recent: RecentResult[int] = RecentResult()
    broken = Check(fail=True)
    outcomes = await asyncio.gather(
        *(recent.get(broken, 10) for _ in range(3)), return_exceptions=True
    )
    assert broken.runs == 1 and all(isinstance(o, RuntimeError) for o in outcomes)
    healthy = Check()
    assert await recent.get(healthy, 10) == 1  # checked again at once, not the failure
    assert await recent.get(broken, 10) == 1  # and that result is kept
    assert broken.runs == 1
