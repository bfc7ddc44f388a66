"""Run blob transfers side by side; the first failure cancels what has not started."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


def run_parallel(tasks: Iterable[Callable[[], T]], jobs: int = 4) -> list[T]:
    """Run ``tasks`` on ``jobs`` threads; results in task order; the first error is raised.

    When a task fails, tasks not yet started are cancelled, running ones are
    waited for (a half-done transfer is never abandoned mid-write), and the
    first error is re-raised.
    """
    todo = list(tasks)
    if jobs <= 1 or len(todo) <= 1:
        return [task() for task in todo]
    with ThreadPoolExecutor(
        max_workers=min(jobs, len(todo)), thread_name_prefix="transfer"
    ) as pool:
        futures: list[Future[T]] = [pool.submit(task) for task in todo]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f in done and f.exception() is not None]
        if failed:
            for f in pending:
                f.cancel()
            wait(pending)
            error = failed[0].exception()
            assert error is not None
            raise error
    return [f.result() for f in futures]
