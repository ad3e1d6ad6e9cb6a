"""HashingPool admission (issue item 4): the wait it promises, jobs weighed by their kind's measured
cost, and one job per account in the pool. No database and no hashing, but real threads and real
time: sleep-based jobs of known cost (sleeping threads leave the two cores to everyone else). A
system test for that reason, not a unit test (those take a fake clock)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from apps.user.passwords import HashingOverloaded, HashingPool


@pytest.fixture
def make_pool():
    pools = []

    def make(threads: int, max_wait: float) -> HashingPool:
        pools.append(HashingPool(threads, max_wait=max_wait))
        return pools[-1]

    yield make
    for pool in pools:
        pool.executor.shutdown(wait=True, cancel_futures=True)


def sleeper(seconds: float, started: list[float] | None = None):
    def job():
        if started is not None:
            started.append(time.perf_counter())
        time.sleep(seconds)

    return job


async def learn(pool: HashingPool, kind: str, seconds: float, times: int = 3) -> None:
    for _ in range(times):
        await pool.run(sleeper(seconds), work=(kind,))


async def admitted(pool: HashingPool, kind: str, seconds: float, count: int) -> int:
    """Offer `count` jobs at the same instant; how many were admitted (the rest refused at once)."""
    results = await asyncio.gather(
        *[pool.run(sleeper(seconds), work=(kind,)) for _ in range(count)], return_exceptions=True
    )
    assert all(r is None or isinstance(r, HashingOverloaded) for r in results), results
    return sum(r is None for r in results)


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


async def test_queue_wait_stays_within_max_wait_under_three_times_capacity(make_pool):
    max_wait = 0.25
    pool = make_pool(threads=2, max_wait=max_wait)
    # a login storm's mix: three current-policy checks for one legacy check costing five times more
    costs = {"current": 0.01, "legacy": 0.05}
    for kind, seconds in costs.items():
        await learn(pool, kind, seconds)
    mean = (3 * costs["current"] + costs["legacy"]) / 4
    capacity = pool.threads / mean  # jobs per second
    offered, duration = 3 * capacity, 1.2

    waits, refusals, tasks = [], [], []

    async def offer(kind: str) -> None:
        started: list[float] = []
        submitted = time.perf_counter()
        try:
            await pool.run(sleeper(costs[kind], started), work=(kind,))
        except HashingOverloaded:
            refusals.append(time.perf_counter() - submitted)
        else:
            waits.append(started[0] - submitted)

    begin = time.perf_counter()
    n = 0
    while (now := time.perf_counter()) - begin < duration:
        while n < (now - begin) * offered:  # keep the offered rate even when a sleep runs late
            tasks.append(asyncio.create_task(offer("legacy" if n % 4 == 3 else "current")))
            n += 1
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)

    assert len(waits) + len(refusals) == n
    assert p95(waits) <= max_wait, (p95(waits), max(waits))
    assert max(waits) <= 2 * max_wait, max(waits)
    assert 0.4 * n <= len(refusals) <= 0.85 * n, (len(refusals), n)  # about two thirds
    assert max(refusals) < 0.05, max(refusals)  # refused at once, not after waiting
    # and the pool was kept busy, not refusing for the sake of it
    assert len(waits) >= 0.6 * capacity * duration, (len(waits), capacity * duration)


async def test_a_slow_kind_counts_as_its_measured_multiple(make_pool):
    pool = make_pool(threads=1, max_wait=0.3)
    await learn(pool, "argon2", 0.01)
    await learn(pool, "pbkdf2 1000000", 0.1, times=2)
    ratio = pool.estimate("pbkdf2 1000000") / pool.estimate("argon2")
    assert 5 <= ratio <= 12, pool.costs  # 10 up to sleep overshoot

    # 0.3 s of queue holds 3-4 slow jobs (starting at 0, 0.1, 0.2, 0.3 s), but ~30 fast ones
    slow = await admitted(pool, "pbkdf2 1000000", 0.1, 20)
    fast = await admitted(pool, "argon2", 0.01, 40)
    assert 2 <= slow <= 5, (slow, pool.costs)
    assert fast >= 4 * slow, (fast, slow, pool.costs)


async def test_a_running_job_counts_only_what_is_left_of_it(make_pool):
    pool = make_pool(threads=1, max_wait=0.25)
    await learn(pool, "legacy", 0.4, times=1)
    running = asyncio.create_task(pool.run(sleeper(0.4), work=("legacy",)))
    await asyncio.sleep(0.02)
    assert 0.3 <= pool.expected_wait() <= 0.42
    with pytest.raises(HashingOverloaded):  # it would start only after ~0.38 s
        await pool.run(sleeper(0.01), work=("current",))
    await asyncio.sleep(0.25)
    assert pool.expected_wait() <= 0.2
    await pool.run(sleeper(0.01), work=("current",))  # now it starts within 0.25 s
    await running


async def test_one_job_per_account_in_the_pool_the_next_wait_their_turn(make_pool):
    pool = make_pool(threads=2, max_wait=2)
    await learn(pool, "legacy", 0.3, times=1)
    done = []

    async def job(account, seconds):
        await pool.run(sleeper(seconds), work=("legacy",), account=account)
        done.append(account)

    first = asyncio.create_task(job("alice", 0.3))
    await asyncio.sleep(0.02)
    second = asyncio.create_task(job("alice", 0.01))  # waits for alice's first check, outside the pool
    await asyncio.sleep(0.02)
    assert pool.expected_wait() < 0.05  # the waiting check holds no place in the pool's queue
    await job("bob", 0.01)  # another account goes straight through meanwhile
    assert done == ["bob"]
    await asyncio.gather(first, second)
    assert done == ["bob", "alice", "alice"]  # in order: the second began after the first ended
    assert pool.stats.refused["account"] == 0
    assert not pool._accounts  # nothing kept for accounts with nothing in flight


async def test_an_account_turn_beyond_max_wait_is_refused_at_once(make_pool):
    pool = make_pool(threads=2, max_wait=0.5)
    await learn(pool, "legacy", 0.2, times=1)
    queued = [
        asyncio.create_task(pool.run(sleeper(0.2), work=("legacy",), account="alice")) for _ in range(3)
    ]
    await asyncio.sleep(0.02)
    began = time.perf_counter()
    with pytest.raises(HashingOverloaded):  # three checks of 0.2 s ahead of it, and 0.5 s to wait
        await pool.run(sleeper(0.2), work=("legacy",), account="alice")
    assert time.perf_counter() - began < 0.05
    assert pool.stats.refused["account"] == 1
    await asyncio.gather(*queued)


async def test_an_attacker_hammering_an_account_does_not_lock_its_owner_out(make_pool):
    """Wrong-password attempts kept in flight from a few connections: the owner's check waits its
    turn behind them instead of being refused because one is in flight."""
    pool = make_pool(threads=1, max_wait=2)
    await learn(pool, "current", 0.03, times=1)
    stop = False

    async def attacker():
        while not stop:
            with contextlib.suppress(HashingOverloaded):
                await pool.run(sleeper(0.03), work=("current",), account="victim")

    attackers = [asyncio.create_task(attacker()) for _ in range(3)]
    await asyncio.sleep(0.1)
    try:
        for _ in range(5):
            await pool.run(sleeper(0.03), work=("current",), account="victim")  # never refused
    finally:
        stop = True
        await asyncio.gather(*attackers)


async def test_a_cancelled_caller_keeps_the_slot_until_its_thread_is_done(make_pool):
    pool = make_pool(threads=1, max_wait=2)
    await learn(pool, "legacy", 0.3, times=1)
    waiting = asyncio.create_task(pool.run(sleeper(0.3), work=("legacy",), account="alice"))
    await asyncio.sleep(0.05)
    waiting.cancel()  # the client went away; the hash still occupies the thread
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert pool.expected_wait() > 0.1
    began = time.perf_counter()
    await pool.run(sleeper(0.01), work=("legacy",), account="alice")
    # the next check of alice began only once the cancelled caller's hash had ended
    assert time.perf_counter() - began >= 0.15
