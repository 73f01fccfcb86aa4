"""The values alert evaluation passes around. Plain frozen dataclasses, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Status = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class Observation:
    """What one rule sees about one subject now.

    `subject` is a stable key (a GPU, a deployment, a host, a finding fingerprint).
    `breaching` None means "muted or unknown": whatever state the subject has is kept.
    `title` is one line with the number that matters; `labels` say where (cluster, host…).
    """

    subject: str
    breaching: bool | None
    value: float | None = None
    title: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlertState:
    """The last known state of a rule for a subject, as persisted between evaluations."""

    subject: str
    status: Status
    fired_at: datetime
    resolved_at: datetime | None = None
    value: float | None = None
    title: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transition:
    """A change worth telling someone about: a subject started or stopped breaching."""

    subject: str
    status: Status
    at: datetime
    fired_at: datetime
    value: float | None
    title: str
    labels: Mapping[str, str]
