"""The operational API kept from the old system: health, recent logs, JSON summary, feedback.

Database calls run in a worker thread: the event loop keeps serving predictions meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, Strict

from housing.servingdb import RecordStore, UnknownPredictionError
from model_server.errors import ModelServerError
from model_server.metrics import ServerMetrics
from model_server.model import HousingModel
from model_server.records.writer import RecordWriter
from model_server.watcher import ModelWatcher

MAX_LOG_LIMIT = 10_000
# Feedback may come right after its prediction, before the writer committed the row.
FEEDBACK_FLUSH_SECONDS = 5.0


@dataclass(frozen=True)
class OpsContext:
    model: HousingModel
    store: RecordStore
    writer: RecordWriter
    watcher: ModelWatcher
    metrics: ServerMetrics
    started: float  # time.monotonic() at start-up

    def uptime(self) -> float:
        return round(time.monotonic() - self.started, 3)


class Challenger(BaseModel):
    model_version: str
    run_id: str
    backend: str
    loaded_at: datetime


class Health(BaseModel):
    status: Literal["ok", "not_ready"]
    ready: bool
    model_name: str
    model_version: str | None
    run_id: str | None
    backend: str | None = Field(
        description="lleaves (compiled trees), onnxruntime, or sklearn when ONNX was refused"
    )
    onnx_refused: str | None = Field(description="why the ONNX backend is not used, if not")
    compiled_refused: str | None = Field(
        description="why compiled trees do not serve this version, if they do not (null while "
        "they compile, with backend onnxruntime)"
    )
    loaded_at: datetime | None
    uptime_seconds: float
    registry_error: str | None = Field(description="last problem reaching the model registry")
    prediction_log_backlog: int
    challenger_mode: Literal["off", "shadow", "canary"]
    challenger: Challenger | None = Field(
        description="the challenger in use beside the champion (shadow or canary), if any"
    )


class FeedbackIn(BaseModel):
    prediction_id: Annotated[str, Field(min_length=1, max_length=200)]
    actual: Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)] = Field(
        description="The true median house value, in units of $100,000."
    )


class FeedbackOut(BaseModel):
    prediction_id: str
    actual: float
    recorded: bool


def ops_router(ctx: OpsContext) -> APIRouter:
    router = APIRouter(tags=["Operations"])

    @router.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health() -> JSONResponse:
        """Model status and version, uptime; 503 until a model version is loaded."""
        loaded = ctx.model.loaded
        challenger = ctx.model.challenger
        body = Health(
            status="ok" if loaded else "not_ready",
            ready=loaded is not None,
            model_name=ctx.model.name,
            model_version=loaded.version if loaded else None,
            run_id=loaded.ref.run_id if loaded else None,
            backend=loaded.backend if loaded else None,
            onnx_refused=loaded.onnx_refused if loaded else None,
            compiled_refused=loaded.compiled_refused if loaded else None,
            loaded_at=loaded.loaded_at if loaded else None,
            uptime_seconds=ctx.uptime(),
            registry_error=ctx.watcher.last_error,
            prediction_log_backlog=ctx.writer.backlog,
            challenger_mode=ctx.model.mode,
            challenger=None
            if challenger is None
            else Challenger(
                model_version=challenger.version,
                run_id=challenger.ref.run_id,
                backend=challenger.backend,
                loaded_at=challenger.loaded_at,
            ),
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=200 if loaded else 503)

    @router.get("/logs/{limit}")
    async def logs(
        limit: Annotated[int, Path(ge=1, le=MAX_LOG_LIMIT)],
    ) -> list[dict[str, Any]]:
        """The newest `limit` prediction records (one per instance, failures included)."""
        return await asyncio.to_thread(ctx.store.recent, limit)

    @router.get("/metrics/summary")
    async def summary() -> dict[str, Any]:
        """Counts, success rate and latency percentiles (ms) from the prediction log, and
        uptime."""
        stored = await asyncio.to_thread(ctx.store.summary)
        return {
            "model_name": ctx.model.name,
            "model_version": ctx.model.served_version,
            "uptime_seconds": ctx.uptime(),
            "prediction_log_backlog": ctx.writer.backlog,
            **stored,
        }

    @router.post("/feedback", response_model=FeedbackOut)
    async def feedback(body: FeedbackIn) -> FeedbackOut:
        """The true value of an earlier prediction, by its prediction id (404 if unknown)."""
        await asyncio.to_thread(_add_feedback, ctx, body.prediction_id, body.actual)
        ctx.metrics.feedback_received(ctx.model.served_version or "none")
        return FeedbackOut(prediction_id=body.prediction_id, actual=body.actual, recorded=True)

    return router


def _add_feedback(ctx: OpsContext, prediction_id: str, actual: float) -> None:
    try:
        ctx.store.add_feedback(prediction_id, actual)
    except UnknownPredictionError:
        # Not in the database yet, or never: commit what is queued and look once more.
        if ctx.writer.backlog == 0:
            raise
        if not ctx.writer.flush(FEEDBACK_FLUSH_SECONDS):
            raise ModelServerError(
                f"prediction {prediction_id!r} is not in the log yet ({ctx.writer.backlog} "
                "records are being written); retry later",
                status_code=503,
            ) from None
        ctx.store.add_feedback(prediction_id, actual)
