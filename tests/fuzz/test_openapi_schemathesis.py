"""Schemathesis against the app's own OpenAPI schema: every operation, called in process
with an admin token on a server bound beyond loopback (so no local mode), answers
something other than a 5xx for whatever the schema allows and for what it does not.

One fresh app and database per operation; a bounded number of examples per operation so the
whole file runs in about a minute on two cores. `POST …/webhooks/{id}/test` is left out: it
sends a request to whatever URL a generated webhook holds, which would reach the network."""

from __future__ import annotations

import secrets
from collections import Counter

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from api.app import create_app
from api.settings import Settings
from api.store import Store

ADMIN = "iwt_" + secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {ADMIN}"}
EXAMPLES_PER_OPERATION = 12


@pytest.fixture
def fuzzed_app(settings: Settings, store: Store) -> FastAPI:
    # Bound beyond loopback, so every call needs the token; rate limits out of the way.
    secured = Settings(
        data_dir=settings.data_dir,
        clickhouse_database=settings.clickhouse_database,
        host="0.0.0.0",
        notify={"scheduler_enabled": False},
        security={
            "bootstrap_tokens": f"admin:{ADMIN}",
            "api_rate_per_s": 10_000,
            "api_burst": 10_000,
            "ingest_rate_per_s": 10_000,
            "ingest_burst": 10_000,
        },
    )
    return create_app(secured, store=store)


def operations(app: FastAPI) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH).exclude(
        method="POST", path_regex=r"/webhooks/\{webhook_id\}/test$"
    )
    ops = [result.ok() for result in schema.get_all_operations()]
    # Revoking tokens goes last: it may revoke the one the other operations use.
    return sorted(ops, key=lambda op: op.method == "delete" and "/tokens/" in op.path)


def test_no_operation_answers_a_server_error(fuzzed_app: FastAPI) -> None:
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    ops = operations(fuzzed_app)
    assert len(ops) >= 40  # the whole API, not an empty schema

    for op in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.generate],
                database=None,
            )
            @given(case=op.as_strategy(generation_mode=mode))
            def call(case: schemathesis.Case) -> None:
                response = case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
                statuses[response.status_code] += 1

            try:
                call()
            except Unsatisfiable:  # no parameters to break: nothing negative to send
                continue
            except (Exception, BaseExceptionGroup) as exc:  # a check failed: record it, go on
                failures.append(f"{op.method.upper()} {op.path} ({mode.value}): {str(exc)[:600]}")
    assert not failures, "\n\n".join(failures)
    # The calls got past the token check: most answers are not 401.
    assert statuses[401] < sum(statuses.values()) / 4, statuses
