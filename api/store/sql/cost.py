"""Queries behind `GET /api/v1/cost` (priced and grouped by `api.findings.unit_cost`).

GPU-minutes are counted as distinct minute numbers per GPU (a bitmap), so rows of a
minute not yet merged are not counted twice."""

from __future__ import annotations

from api.store.gateway import Query

GPU_HOURS = Query(
    "cost.gpu_hours",
    """
SELECT cluster, host, gpu_uuid,
    anyLast(gpu_name)                                    AS gpu_name_,
    anyLast(deployment)                                  AS deployment_,
    groupBitmap(toUInt32(intDiv(toUInt32(minute), 60)))  AS minutes_,
    sum(if(sm_activity_n > 0, sm_activity_sum, toFloat64(util_gpu_sum)))
        / nullIf(sum(if(sm_activity_n > 0, sm_activity_n, util_gpu_n)), 0) AS util_mean_
FROM gpu_minute
WHERE minute >= {start:DateTime64(6)} AND minute < {end:DateTime64(6)}
GROUP BY cluster, host, gpu_uuid
ORDER BY cluster, host, gpu_uuid
SETTINGS optimize_aggregation_in_order = 1
""",
)

MODEL_TRAFFIC = Query(
    "cost.model_traffic",
    """
SELECT cluster, deployment AS deployment_name, model AS model_name,
    sum(requests)          AS n_requests,
    sum(output_tokens_sum) AS n_output_tokens,
    sum(e2e_sum)           AS e2e_total
FROM deployment_minute
WHERE minute >= {start:DateTime64(6)} AND minute < {end:DateTime64(6)}
GROUP BY cluster, deployment_name, model_name
ORDER BY cluster, deployment_name, model_name
SETTINGS optimize_aggregation_in_order = 1
""",
)
