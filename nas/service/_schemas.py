"""Request and response bodies of the REST API (pydantic; they make the OpenAPI docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorBody",
    "ExportRequest",
    "ExportResponse",
    "Health",
    "JobDetail",
    "JobSummary",
    "LatencySummary",
]


class ErrorBody(BaseModel):
    detail: str = Field(description="One line naming the bad value and what is allowed.")


class Health(BaseModel):
    status: str
    version: str
    database: str = Field(description="The service database's dialect (sqlite, postgresql).")
    auth: str = Field(description="'token', or 'insecure-local' (token-less requests allowed).")
    runners: int = Field(description="Job runner processes alive in this server.")


class JobSummary(BaseModel):
    id: str
    kind: str
    name: str
    status: str
    owner: str
    created_at: str
    updated_at: str
    error: str | None = None
    backend: str = Field("local", description="local (a runner process) or ray (a Ray Jobs API submission).")


class JobDetail(JobSummary):
    spec: dict[str, Any]
    metrics: list[dict[str, Any]]
    versions: dict[str, Any]
    heartbeat_at: str | None = None
    ray_address: str | None = Field(None, description="The Ray cluster (dashboard address) of a ray job.")
    runner_host: str | None = None
    trials: int = Field(description="Indexed (finished) trials.")
    hypervolume_history: list[tuple[int, float | None]] = Field(
        description="(expensive evaluations, hypervolume of the feasible front so far)."
    )
    runner_pid: int | None = Field(
        None,
        description="Pid of this server's runner process of the job, if alive (a runner of an "
        "earlier server process that still ran when this one started counts too).",
    )
    train: dict[str, Any] | None = Field(
        None,
        description="A train job's progress (step, total_steps, epoch, epochs, last_epoch metrics) and, "
        "once finished, its checkpoint, sha256 and artifact_id.",
    )


class LatencySummary(BaseModel):
    device: str
    space: str
    keys: int = Field(description="Entries (op keys, per resolution partition) in the table.")
    resolution_partitions: list[int]
    overhead: dict[str, Any]
    meta: dict[str, Any]


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trial: int = Field(ge=0, description="Trial number of the job.")
    formats: str = Field("torch,onnx", description="Comma-separated: torch, onnx, torchscript.")
    int8: bool = False
    measure: bool = Field(False, description="Re-measure the exported files' latency on the server.")


class ExportResponse(BaseModel):
    id: str = Field(description="The export's name: <trial>-<hex>.")
    job: str
    trial: int
    download: str = Field(description="URL path of the bundle as a .zip.")
    manifest: dict[str, Any]
