"""What the weekly email needs beyond the findings: GPU-minutes and idle GPU-minutes per
GPU and local day (priced in Python with the findings' PriceBook). Idle means what the
idle finding and the gpu_idle alert mean (see `api.store.sql.alerts.GPU_IDLE`)."""

from api.store.gateway import Query

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
    LEFT JOIN
    (
        SELECT minute, cluster, host, gpu_uuid, sum(busy_s) AS busy_s
        FROM inflight_minute
        WHERE minute >= {since:DateTime64(6, 'UTC')} AND minute < {until:DateTime64(6, 'UTC')}
          AND gpu_uuid != ''
        GROUP BY minute, cluster, host, gpu_uuid
    ) AS gb ON gb.minute = g.minute AND gb.cluster = g.cluster AND gb.host = g.host
           AND gb.gpu_uuid = g.gpu_uuid
    LEFT JOIN
    (
        SELECT minute, cluster, host, sum(busy) AS busy_s
        FROM
        (
            SELECT minute, cluster, host, busy_s AS busy
            FROM inflight_minute
            WHERE minute >= {since:DateTime64(6, 'UTC')} AND minute < {until:DateTime64(6, 'UTC')}
              AND gpu_uuid = ''
            UNION ALL
            SELECT minute, cluster, host, value_max - value_min AS busy
            FROM engine_minute
            WHERE minute >= {since:DateTime64(6, 'UTC')} AND minute < {until:DateTime64(6, 'UTC')}
              AND metric = 'gpu_busy_seconds'
        )
        GROUP BY minute, cluster, host
    ) AS hb ON hb.minute = g.minute AND hb.cluster = g.cluster AND hb.host = g.host
    GROUP BY day, cluster, host, gpu_uuid
    ORDER BY day, cluster, host, gpu_uuid
    LIMIT 1000000
    """,
)
