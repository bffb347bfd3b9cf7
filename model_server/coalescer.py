"""Small predictions asked for in one iteration of the event loop, computed in one call.

The compiled trees' machine code (1.8 MB for the 600-tree champion) does not stay in the CPU's
caches from one request to the next: one row takes ~6 us with hot caches and ~45 us cold,
eight rows ~20 and ~75 (bench/README.md). Under concurrent load several requests reach
predict in the same iteration of the event loop; each gets a future, and one call at the
start of the next iteration predicts all their rows. No request waits for another to come:
a batch is what was already asked (dynamic batching with no queue delay). The batch is then
settled in one call too (its log records queued at once, its metrics and drift window
updated once), and each future gets its own outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

from model_server.backends import Predictor

Item = TypeVar("Item")
Result = TypeVar("Result")
# One batch of a predictor: each item with its rows and their predictions, and all the rows
# and predictions (concatenated) -> each item's result, in order.
Settle = Callable[
    [Sequence[tuple[Item, np.ndarray, np.ndarray]], np.ndarray, np.ndarray], Sequence[Result]
]


class Coalescer(Generic[Item, Result]):
    """Used from the event loop's thread only."""

    def __init__(self, settle: Settle[Item, Result]) -> None:
        self._settle = settle
        self._pending: dict[int, tuple[Predictor, list[Asked[Item, Result]]]] = {}
        self._flush_on: asyncio.AbstractEventLoop | None = None

    def predict(self, predictor: Predictor, x: np.ndarray, item: Item) -> asyncio.Future[Result]:
        """`item` settled with `predictor`'s predictions of `x`, computed with those asked of
        it in the same iteration."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        if self._flush_on is not loop:
            # The first ask of this iteration (anything left behind by a loop that closed
            # before its flush is dropped: those futures belonged to it).
            self._pending = {}
            self._flush_on = loop
            loop.call_soon(self._flush)
        asked = self._pending.get(id(predictor))  # hot swap: each version's rows apart
        if asked is None:
            self._pending[id(predictor)] = (predictor, [Asked(item, x, future)])
        else:
            asked[1].append(Asked(item, x, future))
        return future

    def _flush(self) -> None:
        pending, self._pending, self._flush_on = self._pending, {}, None
        for predictor, asked in pending.values():
            self._answer(predictor, asked)

    def _answer(self, predictor: Predictor, asked: list[Asked[Item, Result]]) -> None:
        """One call for all the rows asked of `predictor` and one settle for the requests still
        waiting (a cancelled one, its client gone, is not settled); each future gets its own
        result. If the call fails, each request is predicted alone, so that a request whose
        rows make it fail fails alone. If the settle fails (a bug: the rows were checked),
        every request it settled gets the error."""
        try:
            x = asked[0].x if len(asked) == 1 else np.concatenate([one.x for one in asked])
            predictions = predictor.predict(x)
        except Exception as exc:
            if len(asked) > 1:
                for one in asked:
                    self._answer(predictor, [one])
            elif not asked[0].future.done():
                asked[0].future.set_exception(exc)
            return
        waiting, batch, start = [], [], 0
        for one in asked:
            end = start + len(one.x)
            if not one.future.done():
                waiting.append(one)
                batch.append((one.item, one.x, predictions[start:end]))
            start = end
        if not waiting:
            return
        if len(waiting) < len(asked):
            x = np.concatenate([one.x for one in waiting])
            predictions = np.concatenate([answer for _, _, answer in batch])
        try:
            results = self._settle(batch, x, predictions)
        except Exception as exc:
            for one in waiting:
                one.future.set_exception(exc)
            return
        for one, result in zip(waiting, results, strict=True):
            one.future.set_result(result)


class Asked(Generic[Item, Result]):
    __slots__ = ("future", "item", "x")

    def __init__(self, item: Item, x: np.ndarray, future: asyncio.Future[Result]) -> None:
        self.item = item
        self.x = x
        self.future = future
