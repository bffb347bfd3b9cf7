"""The retraining API kept from the old system: status, manual trigger, policy, history.

The policy is the training job's own RetrainPolicy (housing/policy.py, a pure pydantic
module): the server validates and stores it in the serving database, the job reads it there
at its next decision. Database calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from annotated_types import Le
from fastapi import APIRouter, Body, Path
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    create_model,
)

from housing.policy import RetrainPolicy
from housing.servingdb.retrain import RetrainStore
from model_server.errors import (
    ConflictError,
    ModelServerError,
    Problem,
    UnprocessableEntityError,
)
from model_server.launchers import Launcher

MAX_DECISIONS = 1000
# Largest integer a policy field takes: every JSON reader (and the response encoder, which
# refuses integers beyond 64 bits) reads it exactly.
MAX_POLICY_INT = 2**53 - 1


@dataclass(frozen=True)
class RetrainContext:
    store: RetrainStore
    launcher: Launcher


class Lease(BaseModel):
    holder: str = Field(description="who runs: host:pid:nonce of the training process")
    acquired_at: datetime
    expires_at: datetime = Field(description="renewed while the run lives")
    decision_id: int | None = Field(description="the decision the run is carrying out")


class RetrainStatus(BaseModel):
    enabled: bool = Field(description="the policy's enabled flag (forced runs ignore it)")
    launcher: str = Field(description="how a trigger starts a run: local or kubernetes")
    thresholds: RetrainPolicy = Field(description="the effective policy: stored over defaults")
    running: bool = Field(description="a run holds the lease")
    lease: Lease | None
    last_decision: dict[str, Any] | None = Field(description="the newest recorded decision")


class TriggerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: Annotated[bool, Strict()] = Field(
        default=False,
        description="run even if no trigger fired, retraining is disabled or the last run "
        "was too recent",
    )


class TriggerOut(BaseModel):
    force: bool
    launched: dict[str, Any] = Field(
        description="what was started: the local process (pid, command, log file) or the "
        "Kubernetes Job (namespace, name)"
    )


def _integral(value: object) -> object:
    """A JSON number with no fraction (5.0) is an integer, as JSON Schema says."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _policy_change_model() -> type[BaseModel]:
    """RetrainPolicy's fields, each optional and nullable (null: back to the default), with
    their constraints; strict (true is not "yes", 5 not "5"), finite, no other fields. The
    fields set in a request are the change."""
    fields: dict[str, Any] = {}
    for name, info in RetrainPolicy.model_fields.items():
        # The constraints inside the optional type, where the JSON schema states them; the
        # integral check wraps them (it runs first).
        checks = [Le(MAX_POLICY_INT), BeforeValidator(_integral)] if info.annotation is int else []
        annotation: Any = info.annotation
        if checks or info.metadata:
            annotation = Annotated[annotation, *info.metadata, *checks]
        fields[name] = (annotation | None, Field(default=None, description=info.description))
    return create_model(
        "PolicyChange",
        __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False),
        __doc__="Fields of the retraining policy to change.",
        **fields,
    )


PolicyChange = _policy_change_model()


class PolicyOut(BaseModel):
    thresholds: RetrainPolicy = Field(description="the effective policy")
    stored: dict[str, Any] = Field(description="the values set through this API")


CONFIG_BODY = Body(
    description="Fields of the retraining policy to change; the others keep their stored "
    "value. null puts a field back to its default.",
    openapi_examples={
        "thresholds": {"value": {"r2_floor": 0.6, "drift_threshold": 0.25}},
        "disable": {"value": {"enabled": False}},
    },
)


def _policy(stored: dict[str, Any]) -> RetrainPolicy:
    try:
        return RetrainPolicy.model_validate(stored)
    except ValidationError as exc:  # written by hand into the database, say
        raise ModelServerError(f"the stored retraining policy is invalid: {exc}") from exc


def _invalid(exc: ValidationError) -> UnprocessableEntityError:
    problems = [
        Problem(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}") for e in exc.errors()
    ]
    return UnprocessableEntityError("; ".join(str(p) for p in problems), problems)


def merge_policy(stored: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """`change` over `stored` (null removes a field), validated as a whole by RetrainPolicy;
    the new stored values. ValidationError names each bad field."""
    unknown = [name for name in change if name not in RetrainPolicy.model_fields]
    if unknown:
        RetrainPolicy.model_validate(dict.fromkeys(unknown))  # raises, naming them
    merged = {k: v for k, v in {**stored, **change}.items() if v is not None}
    policy = RetrainPolicy.model_validate(merged)
    return policy.model_dump(mode="json", include=set(merged))


def retrain_router(ctx: RetrainContext) -> APIRouter:
    router = APIRouter(prefix="/retrain", tags=["Retraining"])
    store = ctx.store

    @router.get("/status", response_model=RetrainStatus)
    async def status() -> RetrainStatus:
        """Enabled or not, the effective thresholds, the newest decision, and whether a run
        holds the lease (and who)."""

        def read() -> tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]]]:
            return store.policy(), store.lease(), store.decisions(1)

        stored, lease, last = await asyncio.to_thread(read)
        policy = _policy(stored)
        return RetrainStatus(
            enabled=policy.enabled,
            launcher=ctx.launcher.kind,
            thresholds=policy,
            running=lease is not None,
            lease=None if lease is None else Lease.model_validate(lease),
            last_decision=last[0] if last else None,
        )

    @router.post(
        "/trigger",
        status_code=202,
        response_model=TriggerOut,
        responses={409: {"description": "a run is already going"}},
    )
    async def trigger(body: TriggerIn | None = None) -> TriggerOut:
        """Start a retraining run now (`training_job retrain --source api`); it decides and
        records its decision like any other. 409 while a run holds the lease."""
        force = body.force if body is not None else False
        lease = await asyncio.to_thread(store.lease)
        if lease is not None:
            raise ConflictError(
                f"a retraining run is already going: {lease['holder']} since "
                f"{lease['acquired_at']} (lease until {lease['expires_at']})"
            )
        launched = await asyncio.to_thread(ctx.launcher.launch, force)
        return TriggerOut(force=force, launched=launched)

    @router.post("/config", response_model=PolicyOut)
    async def config(body: Annotated[PolicyChange, CONFIG_BODY]) -> PolicyOut:  # type: ignore[valid-type]
        """Change the retraining policy (partial: merged into the stored one). The training job
        reads it at its next decision. 422 names each bad field."""
        change = body.model_dump(mode="json", exclude_unset=True)  # type: ignore[attr-defined]
        try:
            stored = await asyncio.to_thread(
                store.update_policy, lambda current: merge_policy(current, change)
            )
        except ValidationError as exc:
            raise _invalid(exc) from None
        return PolicyOut(thresholds=_policy(stored), stored=stored)

    @router.get("/logs/{limit}")
    async def logs(
        limit: Annotated[int, Path(ge=1, le=MAX_DECISIONS)],
    ) -> list[dict[str, Any]]:
        """The newest `limit` (1-1000) retraining decisions, newest first: taken or skipped,
        with triggers, reasons, signals, the policy applied, and the outcome."""
        return await asyncio.to_thread(store.decisions, limit)

    return router
