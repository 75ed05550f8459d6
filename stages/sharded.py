"""A stage's work split into shards, so an orchestrator can run each shard as its own task.

Stage modules build a `ShardedJob`; running it inline (`run_all`), running its shards as Prefect tasks
in threads, or rebuilding it in other processes (Ray workers) and running shards there all give the
same result: each shard is a pure function of the job's inputs and its index, writes (if anything) its
own shard atomically, and `finish` only reads what the shards returned or recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _never(index: int) -> bool:
    return False


@dataclass
class ShardedJob:
    """`run_shard(i)` does unit i and returns a small, picklable result; `finish(results)` gets the
    results of the units run by this call (units already done by an earlier run are not in it)."""

    num_shards: int
    run_shard: Callable[[int], Any]
    finish: Callable[[dict[int, Any]], Any]
    is_done: Callable[[int], bool] = _never
    name: str = "stage"

    def pending(self) -> list[int]:
        return [i for i in range(self.num_shards) if not self.is_done(i)]

    def run_all(self) -> Any:
        return self.finish({i: self.run_shard(i) for i in self.pending()})


class Lazy(Generic[T]):
    """A value (a model) built on first use, once, even when shards run in several threads.

    A driver that only plans and commits never pays for the model its workers load.
    """

    def __init__(self, build: Callable[[], T]):
        self._build = build
        self._value: list[T] = []
        self._lock = threading.Lock()

    @classmethod
    def of(cls, value: T) -> Lazy[T]:
        lazy = cls(lambda: value)
        lazy._value.append(value)
        return lazy

    def get(self) -> T:
        with self._lock:
            if not self._value:
                self._value.append(self._build())
            return self._value[0]
