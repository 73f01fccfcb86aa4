"""Alert evaluation as a pure function: the last states and what is observed now in,
the transitions to announce and the states to keep out.

- A subject breaching with no state, or a resolved one, starts firing (one transition).
- A subject still breaching stays firing: no transition, so no repeated message.
- A firing subject no longer breaching, or no longer observed at all, resolves (one
  transition); a resolved one stays quiet.
- A subject observed as `breaching=None` (muted, e.g. an acknowledged finding) keeps its
  state and says nothing.

Because the states are persisted between runs, a restart resumes exactly here: nothing
already announced is announced again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from api.alerts.model import AlertState, Observation, Transition


@dataclass(frozen=True, slots=True)
class Evaluation:
    transitions: list[Transition]
    changed: list[AlertState]
    """States to persist: new, transitioned, or firing with a fresher value."""


def _merge(observations: Iterable[Observation]) -> dict[str, Observation]:
    """One observation per subject; where a subject appears twice, breaching wins."""
    merged: dict[str, Observation] = {}
    for obs in observations:
        seen = merged.get(obs.subject)
        if seen is None or (obs.breaching and not seen.breaching):
            merged[obs.subject] = obs
    return merged


def evaluate(
    observations: Iterable[Observation], states: Mapping[str, AlertState], now: datetime
) -> Evaluation:
    """Transitions and states after observing `observations` at `now` (UTC-aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    observed = _merge(observations)
    transitions: list[Transition] = []
    changed: list[AlertState] = []

    for subject, obs in sorted(observed.items()):
        prev = states.get(subject)
        if obs.breaching is None:
            continue
        if obs.breaching:
            if prev is None or prev.status == "resolved":
                state = AlertState(subject, "firing", now, None, obs.value, obs.title, dict(obs.labels))
                changed.append(state)
                transitions.append(_transition(state, now))
            elif (prev.value, prev.title) != (obs.value, obs.title):
                changed.append(replace(prev, value=obs.value, title=obs.title, labels=dict(obs.labels)))
        elif prev is not None and prev.status == "firing":
            state = replace(prev, status="resolved", resolved_at=now, value=obs.value)
            changed.append(state)
            transitions.append(_transition(state, now))

    for subject, prev in sorted(states.items()):
        if subject not in observed and prev.status == "firing":
            state = replace(prev, status="resolved", resolved_at=now)
            changed.append(state)
            transitions.append(_transition(state, now))

    return Evaluation(transitions, changed)


def _transition(state: AlertState, now: datetime) -> Transition:
    return Transition(
        subject=state.subject,
        status=state.status,
        at=now,
        fired_at=state.fired_at,
        value=state.value,
        title=state.title,
        labels=dict(state.labels),
    )
