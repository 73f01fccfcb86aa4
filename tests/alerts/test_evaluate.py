"""Alert evaluation: firing and resolved transitions, once each, surviving restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.alerts.evaluate import evaluate
from api.alerts.model import AlertState, Observation

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def _run(
    states: dict[str, AlertState], observations: list[Observation], now: datetime
) -> list[tuple[str, str]]:
    """Evaluate, apply the changed states (as persisting them would), return the transitions."""
    result = evaluate(observations, states, now)
    for state in result.changed:
        states[state.subject] = state
    return [(t.subject, t.status) for t in result.transitions]


def test_breaching_fires_once_then_resolves_once() -> None:
    states: dict[str, AlertState] = {}
    hot = [Observation("gpu/a", True, 1.0, "idle")]
    cool = [Observation("gpu/a", False, 40.0, "busy")]
    assert _run(states, hot, T0) == [("gpu/a", "firing")]
    assert _run(states, hot, T0 + MIN) == []
    assert _run(states, hot, T0 + 2 * MIN) == []
    assert _run(states, cool, T0 + 3 * MIN) == [("gpu/a", "resolved")]
    assert _run(states, cool, T0 + 4 * MIN) == []
    assert states["gpu/a"].fired_at == T0 and states["gpu/a"].resolved_at == T0 + 3 * MIN
    assert _run(states, hot, T0 + 5 * MIN) == [("gpu/a", "firing")]
    assert states["gpu/a"].fired_at == T0 + 5 * MIN and states["gpu/a"].resolved_at is None


def test_a_restart_with_persisted_state_sends_nothing_new() -> None:
    before_restart: dict[str, AlertState] = {}
    hot = [Observation("gpu/a", True), Observation("gpu/b", True)]
    assert len(_run(before_restart, hot, T0)) == 2
    # A new process loads the persisted states and observes the same thing.
    after_restart = dict(before_restart)
    assert _run(after_restart, hot, T0 + MIN) == []


def test_a_subject_no_longer_observed_resolves_and_a_never_breaching_one_is_silent() -> None:
    states: dict[str, AlertState] = {}
    assert _run(states, [Observation("gpu/a", True), Observation("gpu/b", False)], T0) == [
        ("gpu/a", "firing")
    ]
    assert "gpu/b" not in states
    assert _run(states, [], T0 + MIN) == [("gpu/a", "resolved")]
    assert _run(states, [], T0 + 2 * MIN) == []


def test_muted_subjects_keep_their_state_silently() -> None:
    states: dict[str, AlertState] = {}
    _run(states, [Observation("finding/f1", True)], T0)
    assert _run(states, [Observation("finding/f1", None)], T0 + MIN) == []
    assert states["finding/f1"].status == "firing"
    assert _run(states, [Observation("finding/f2", None)], T0 + 2 * MIN) == [("finding/f1", "resolved")]
    assert "finding/f2" not in states


def test_still_firing_refreshes_its_value_without_a_transition() -> None:
    states: dict[str, AlertState] = {}
    _run(states, [Observation("kv/x", True, 96.0, "96%")], T0)
    result = evaluate([Observation("kv/x", True, 99.0, "99%")], states, T0 + MIN)
    assert result.transitions == [] and [(s.value, s.title, s.fired_at) for s in result.changed] == [
        (99.0, "99%", T0)
    ]
    assert evaluate([Observation("kv/x", True, 96.0, "96%")], states, T0 + MIN).changed == []


def test_duplicate_observations_count_as_breaching_if_any_is() -> None:
    states: dict[str, AlertState] = {}
    assert _run(states, [Observation("h", False), Observation("h", True)], T0) == [("h", "firing")]
