"""Queries behind `GET /api/v1/cost` (priced and grouped by `api.findings.unit_cost`).

GPU-hours come from the findings' per-GPU-hour rows (`api.store.sql.findings.GPU_HOURS`,
counted by `api.findings.gpu_hours`). Traffic, like the findings, is read from the daily
rollup for whole days, the hourly one for other whole hours, and the minute rollup for the
rest (parameters from `api.findings.spans`)."""

from __future__ import annotations

from api.store.gateway import Query
from api.store.sql.findings import DAYS, HOUR_EDGES, MINUTES

MODEL_TRAFFIC = Query(
    "cost.model_traffic",
    f"""
SELECT cluster, dep AS deployment_name, mod AS model_name,
    sum(req)    AS n_requests,
    sum(output) AS n_output_tokens,
    sum(e2e)    AS e2e_total
FROM (
    SELECT cluster, toString(deployment) AS dep, toString(model) AS mod, toUInt64(day_requests) AS req,
        toUInt64(day_output_tokens) AS output, toFloat64(day_e2e_s) AS e2e
    FROM findings_deployment_day
    WHERE {DAYS}

    UNION ALL

    SELECT cluster, toString(deployment), toString(model), toUInt64(n_requests), toUInt64(output_tokens),
        toFloat64(e2e_s)
    FROM findings_deployment_hour
    WHERE {HOUR_EDGES}

    UNION ALL

    SELECT cluster, toString(deployment), toString(model), toUInt64(requests), toUInt64(output_tokens_sum),
        toFloat64(e2e_sum)
    FROM deployment_minute
    WHERE {MINUTES}
)
GROUP BY cluster, deployment_name, model_name
ORDER BY cluster, deployment_name, model_name
""",
)
