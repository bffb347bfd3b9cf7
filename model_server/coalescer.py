"""Small predictions asked for in one iteration of the event loop, computed in one call.

The compiled trees' machine code (1.8 MB for the 600-tree champion) does not stay in the CPU's
caches from one request to the next: one row takes ~6 us with hot caches and ~45 us cold,
eight rows ~20 and ~75 (bench/README.md). Under concurrent load several small requests reach
predict in the same iteration of the event loop; each gets a future, and one call at the
start of the next iteration predicts all their rows. No request waits for another to come:
a batch is what was already asked (dynamic batching with no queue delay).
"""

from __future__ import annotations

import asyncio

import numpy as np

from model_server.backends import Predictor

Asked = list[tuple[np.ndarray, "asyncio.Future[np.ndarray]"]]


class Coalescer:
    """Used from the event loop's thread only."""

    def __init__(self) -> None:
        self._pending: dict[int, tuple[Predictor, Asked]] = {}
        self._flush_on: asyncio.AbstractEventLoop | None = None

    def predict(self, predictor: Predictor, x: np.ndarray) -> asyncio.Future[np.ndarray]:
        """`predictor`'s predictions of `x`, with those asked of it in the same iteration."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        if self._flush_on is not loop:
            # The first ask of this iteration (anything left behind by a loop that closed
            # before its flush is dropped: those futures belonged to it).
            self._pending = {}
            self._flush_on = loop
            loop.call_soon(self._flush)
        asked = self._pending.get(id(predictor))  # hot swap: each version's rows apart
        if asked is None:
            self._pending[id(predictor)] = (predictor, [(x, future)])
        else:
            asked[1].append((x, future))
        return future

    def _flush(self) -> None:
        pending, self._pending, self._flush_on = self._pending, {}, None
        for predictor, asked in pending.values():
            _answer(predictor, asked)


def _answer(predictor: Predictor, asked: Asked) -> None:
    """One call for all the rows asked of `predictor`; each future gets its own slice."""
    try:
        x = asked[0][0] if len(asked) == 1 else np.concatenate([x for x, _ in asked])
        predictions = predictor.predict(x)
    except Exception as exc:
        if len(asked) > 1:  # one request's failure must not be the others': each alone
            for one in asked:
                _answer(predictor, [one])
            return
        future = asked[0][1]
        if not future.done():
            future.set_exception(exc)
        return
    start = 0
    for x, future in asked:
        end = start + len(x)
        if not future.done():  # not cancelled (the client went away)
            future.set_result(predictions[start:end])
        start = end
