"""Predictions asked for in one iteration of the event loop are computed in one call and
settled in one call."""

from __future__ import annotations

import asyncio

import numpy as np
from sklearn.linear_model import LinearRegression

from model_server.backends import SklearnPredictor
from model_server.coalescer import Coalescer

Batch = list[tuple[object, np.ndarray, np.ndarray]]


class Recording(SklearnPredictor):
    """A real sklearn model that notes how many rows each call predicted, and refuses NaN."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        x = rng.uniform(0, 10, size=(50, 8))
        super().__init__(LinearRegression().fit(x, x @ rng.uniform(-1, 1, size=8)))
        object.__setattr__(self, "calls", [])

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(len(x))  # type: ignore[attr-defined]
        if np.isnan(x).any():
            raise ValueError("NaN in the rows")
        return super().predict(x)


class Settling:
    """The settle step: notes each batch (items, all rows, all predictions) and gives each
    item its own predictions."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[list[object], np.ndarray, np.ndarray]] = []
        self.fail = fail

    def __call__(self, batch: Batch, x: np.ndarray, predictions: np.ndarray) -> list[np.ndarray]:
        self.batches.append(([item for item, _, _ in batch], x, predictions))
        if self.fail:
            raise RuntimeError("settle failed")
        return [answer for _, _, answer in batch]


def coalescer(settle: Settling | None = None) -> Coalescer[object, np.ndarray]:
    return Coalescer(settle or Settling())


def rows(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 10, size=(count, 8))


def test_the_asks_of_one_iteration_are_one_call_and_each_gets_its_own_rows() -> None:
    predictor = Recording(1)
    settled = Settling()
    asked = [rows(n, seed) for seed, n in enumerate([1, 3, 1, 2, 8])]

    async def ask_all() -> list[np.ndarray]:
        batches = coalescer(settled)
        return await asyncio.gather(
            *(batches.predict(predictor, x, k) for k, x in enumerate(asked))
        )

    answers = asyncio.run(ask_all())
    assert predictor.calls == [15]
    for x, answer in zip(asked, answers, strict=True):
        np.testing.assert_allclose(answer, predictor.model.predict(x), rtol=1e-12)
    # One settle for the batch, with every request's rows and predictions in order.
    [(items, x, predictions)] = settled.batches
    assert items == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(x, np.concatenate(asked))
    np.testing.assert_array_equal(predictions, np.concatenate(answers))


def test_asks_of_later_iterations_are_later_calls() -> None:
    predictor = Recording(2)

    async def one_after_another() -> None:
        batches = coalescer()
        for seed in range(3):
            x = rows(2, seed)
            answer = await batches.predict(predictor, x, seed)
            np.testing.assert_allclose(answer, predictor.model.predict(x), rtol=1e-12)

    asyncio.run(one_after_another())
    assert predictor.calls == [2, 2, 2]


def test_each_version_predicts_its_own_requests() -> None:
    old, new = Recording(3), Recording(4)  # a hot swap between two requests
    x, y, z = rows(1, 5), rows(2, 6), rows(1, 7)

    async def ask() -> list[np.ndarray]:
        batches = coalescer()
        return await asyncio.gather(
            batches.predict(old, x, "x"), batches.predict(new, y, "y"), batches.predict(old, z, "z")
        )

    answers = asyncio.run(ask())
    assert old.calls == [2] and new.calls == [2]
    np.testing.assert_allclose(answers[0], old.model.predict(x), rtol=1e-12)
    np.testing.assert_allclose(answers[1], new.model.predict(y), rtol=1e-12)
    np.testing.assert_allclose(answers[2], old.model.predict(z), rtol=1e-12)


def test_a_failing_request_fails_alone() -> None:
    predictor = Recording(8)
    bad = rows(2, 9)
    bad[1, 3] = np.nan
    good = [rows(1, 10), rows(3, 11)]

    async def ask() -> list[object]:
        batches = coalescer()
        futures = [batches.predict(predictor, x, k) for k, x in enumerate((good[0], bad, good[1]))]
        return await asyncio.gather(*futures, return_exceptions=True)

    first, failed, last = asyncio.run(ask())
    assert isinstance(failed, ValueError) and "NaN" in str(failed)
    np.testing.assert_allclose(first, predictor.model.predict(good[0]), rtol=1e-12)  # type: ignore[arg-type]
    np.testing.assert_allclose(last, predictor.model.predict(good[1]), rtol=1e-12)  # type: ignore[arg-type]
    assert predictor.calls == [6, 1, 2, 3]  # together, then each alone


def test_a_cancelled_request_is_not_settled_and_leaves_the_others_their_answers() -> None:
    predictor = Recording(12)
    settled = Settling()
    x, y, z = rows(1, 13), rows(2, 14), rows(1, 15)

    async def ask() -> list[np.ndarray]:
        batches = coalescer(settled)
        kept = batches.predict(predictor, x, "x")
        gone = batches.predict(predictor, y, "y")
        last = batches.predict(predictor, z, "z")
        gone.cancel()  # its client went away: no log record for an answer never sent
        return list(await asyncio.gather(kept, last))

    answers = asyncio.run(ask())
    np.testing.assert_allclose(answers[0], predictor.model.predict(x), rtol=1e-12)
    np.testing.assert_allclose(answers[1], predictor.model.predict(z), rtol=1e-12)
    [(items, rows_settled, predictions)] = settled.batches
    assert items == ["x", "z"]
    np.testing.assert_array_equal(rows_settled, np.concatenate([x, z]))
    np.testing.assert_array_equal(predictions, np.concatenate(answers))


def test_a_failing_settle_fails_the_requests_it_settled() -> None:
    predictor = Recording(20)

    async def ask() -> list[object]:
        batches = coalescer(Settling(fail=True))
        futures = [batches.predict(predictor, rows(1, seed), seed) for seed in (21, 22)]
        return await asyncio.gather(*futures, return_exceptions=True)

    answers = asyncio.run(ask())
    assert all(isinstance(a, RuntimeError) and "settle failed" in str(a) for a in answers)
    assert predictor.calls == [2]  # predicted once: a settle is not retried (records twice)


def test_a_loop_closed_before_its_flush_leaves_nothing_behind() -> None:
    predictor = Recording(15)
    batches = coalescer()
    loop = asyncio.new_event_loop()

    async def ask_and_stop() -> None:
        batches.predict(predictor, rows(1, 16), 16)
        loop.stop()  # the flush would run in the next iteration, which never comes

    task = loop.create_task(ask_and_stop())
    loop.run_forever()
    assert task.done()
    loop.close()
    assert predictor.calls == []

    async def ask_again() -> np.ndarray:
        return await asyncio.wait_for(batches.predict(predictor, rows(1, 17), 17), 5)

    np.testing.assert_allclose(
        asyncio.run(ask_again()), predictor.model.predict(rows(1, 17)), rtol=1e-12
    )
    assert predictor.calls == [1]
