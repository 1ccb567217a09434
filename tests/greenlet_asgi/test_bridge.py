"""service.greenlet_asgi.bridge: sync code awaiting on the running loop, in the task's own
context."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from service.greenlet_asgi.bridge import await_, in_bridge_greenlet, run_in_greenlet

probe: contextvars.ContextVar[str] = contextvars.ContextVar("probe", default="unset")


async def test_await_runs_on_the_callers_loop_and_thread() -> None:
    loop = asyncio.get_running_loop()

    async def where() -> tuple[asyncio.AbstractEventLoop, int]:
        return asyncio.get_running_loop(), threading.get_ident()

    seen_loop, seen_thread = await run_in_greenlet(lambda: await_(where()))
    assert seen_loop is loop
    assert seen_thread == threading.get_ident()


async def test_exceptions_cross_the_bridge_both_ways() -> None:
    async def fails() -> None:
        raise KeyError("from the loop")

    def caller() -> str:
        try:
            await_(fails())
        except KeyError as exc:
            return f"caught {exc}"
        return "not raised"

    assert await run_in_greenlet(caller) == "caught 'from the loop'"

    def raises() -> None:
        raise ValueError("from the greenlet")

    with pytest.raises(ValueError, match="from the greenlet"):
        await run_in_greenlet(raises)


async def test_greenlet_shares_the_tasks_context() -> None:
    async def read_probe() -> str:
        return probe.get()

    def body() -> tuple[str, str]:
        probe.set("set in greenlet")  # visible to coroutines awaited from here
        return probe.get(), await_(read_probe())

    async def in_own_task() -> tuple[tuple[str, str], str]:
        result = await run_in_greenlet(body)
        return result, probe.get()

    (inside, awaited), after = await asyncio.create_task(in_own_task())
    assert inside == awaited == after == "set in greenlet"
    assert probe.get() == "unset"  # another task (this test) never sees it


async def test_concurrent_greenlets_keep_their_own_context() -> None:
    async def one(value: str) -> str:
        def body() -> str:
            probe.set(value)
            await_(asyncio.sleep(0.001 * (hash(value) % 7)))
            return probe.get()

        return await run_in_greenlet(body)

    values = [f"v{i}" for i in range(200)]
    assert await asyncio.gather(*(asyncio.create_task(one(v)) for v in values)) == values


async def test_cancellation_is_thrown_into_the_greenlet_which_may_still_clean_up() -> None:
    cleaned = asyncio.Event()
    started = asyncio.Event()

    def body() -> None:
        try:
            started.set()
            await_(asyncio.sleep(30))
        finally:
            await_(asyncio.sleep(0))  # cleanup may still await
            cleaned.set()

    task = asyncio.create_task(run_in_greenlet(body))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()


def test_await_outside_a_bridge_greenlet_is_a_clear_error() -> None:
    async def nothing() -> None:
        return None

    assert not in_bridge_greenlet()
    with pytest.raises(RuntimeError, match="run_in_greenlet"):
        await_(nothing())
