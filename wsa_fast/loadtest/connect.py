"""The ``connect`` scenario: open and log in N connections (at --rate per second, or --window at a time),
then hold them.

Counted per connection: an attempt is sent, a login that succeeds is answered (its latency runs
from when the attempt was due to the login's success), a refused login or failed connect is a
fail by code, and a connection the server closes while held is a disconnect.
"""

from __future__ import annotations

import asyncio
import time

from .._loadgen import monotonic
from .driver import TICK_S, Driver, SetupError, _call, collector_paused, share


class ConnectScenario:
    def __init__(self, driver: Driver) -> None:
        self.d = driver

    async def attempt(self, k: int, due: float, creds) -> None:
        d, st = self.d, self.d.stats
        st.sent += 1
        try:
            conn = await d.connect(d.compact, "response")
            cid, params = creds.login(k)
            await d.login(conn, cid, params)
        except SetupError as error:
            st.failed += 1
            st.fails[error.code] = st.fails.get(error.code, 0) + 1
            return
        ns = int((monotonic() - due) * 1e9)
        st.interval.record_ns(ns)
        st.latency.record_ns(ns)
        st.delivered += 1
        conn.bench = True  # from now on, the server closing it counts as a disconnect

    async def ramp(self, count: int, creds) -> None:
        a = self.d.a
        t0 = monotonic()
        if a.rate:
            rate = a.rate / self.d.parts
            tasks = []
            for k in range(count):
                due = t0 + k / rate
                delay = due - monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(self.attempt(k, due, creds)))
            await asyncio.gather(*tasks)
        else:
            gate = asyncio.Semaphore(a.window)

            async def gated(k):
                async with gate:
                    await self.attempt(k, monotonic(), creds)

            await asyncio.gather(*(gated(k) for k in range(count)))

    async def run(self, on_tick, barrier) -> dict:
        d = self.d
        a = d.a
        first, count = share(a.clients, d.part, d.parts)
        creds = d.credentials("n", first, count)
        await _call(barrier)
        t0 = time.monotonic()
        d.stats.recording = True

        async def ticker():
            n = 1
            while True:
                await asyncio.sleep(max(0.0, t0 + n * TICK_S - time.monotonic()))
                await _call(on_tick, d.tick(time.monotonic() - t0))
                n += 1

        ticks = asyncio.ensure_future(ticker())
        try:
            start = d.snapshot()
            with collector_paused():
                await self.ramp(count, creds)
            stop = d.snapshot()
            d.setup_s = stop["t"] - start["t"]
            try:  # hold: a connection closed meanwhile is a disconnect
                await asyncio.wait_for(d.interrupted.wait(), a.duration)
            except asyncio.TimeoutError:
                pass
        finally:
            ticks.cancel()
        await _call(on_tick, d.tick(time.monotonic() - t0))
        st = d.stats
        counts = {
            "sent": st.sent,
            "answered": st.delivered,
            "failed": st.failed,
            "lost": 0,
            "duplicated": 0,
            "unknown": st.unknown,
            "garbled": st.bad,
            "skipped": 0,
            "disconnects": st.disconnects,
        }
        return d.result(counts, start, stop)
