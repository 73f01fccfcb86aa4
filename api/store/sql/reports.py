"""What the weekly email needs beyond the findings: GPU-minutes and idle GPU-minutes per
GPU and local day (priced in Python with the findings' PriceBook). Idle means what the
idle finding and the gpu_idle alert mean (see `api.store.sql.alerts.GPU_IDLE`)."""

from api.store.gateway import Query
from api.store.sql.alerts import BUSY_JOINS

GPU_DAYS = Query(
    "reports.gpu_days",
    """
    SELECT
        toDate(g.minute, {tz:String}) AS day,
        g.cluster AS cluster, g.host AS host, g.gpu_uuid AS gpu_uuid,
        any(g.model) AS gpu_name,
        count() AS minutes,
        countIf(g.util IS NOT NULL AND g.util < {idle_pct:Float64} AND gb.busy_s = 0 AND hb.busy_s = 0)
            AS idle_minutes
    FROM
    (
        SELECT minute, cluster, host, gpu_uuid, anyLast(gpu_name) AS model,
               coalesce(toFloat64(max(sm_activity_max)), toFloat64(max(util_gpu_max))) AS util
        FROM gpu_minute
        WHERE minute >= {since:DateTime64(6, 'UTC')} AND minute < {until:DateTime64(6, 'UTC')}
        GROUP BY minute, cluster, host, gpu_uuid
    ) AS g
"""
    + BUSY_JOINS
    + """    GROUP BY day, cluster, host, gpu_uuid
    ORDER BY day, cluster, host, gpu_uuid
    LIMIT 1000000
    """,
)
