"""The live conditions alert rules watch, read from the minute rollups.

Each query covers the half-open window [since, until) of whole minutes; the caller makes
it exactly the rule's `for_minutes` long, ending at the last complete minute, so "in each
of the last N minutes" is `minutes_… = N`. Empty filter strings mean "any".
"""

from api.store.gateway import Query

# The busy time beside each GPU-minute `g` (minute, cluster, host, gpu_uuid), joined as
# `gb` (request seconds in flight on that GPU) and `hb` (on its host with no GPU named,
# plus an engine busy clock advancing there). Shared by the gpu_idle alert and the weekly
# email, so both mean the same thing by "idle".
BUSY_JOINS = """
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
"""

# A GPU-minute is idle as the idle finding counts it: peak utilisation (SM activity where
# GPM reports it, else NVML utilisation) below the threshold, no request in flight on the
# GPU, nor on its host with no GPU named (`gpu_uuid = ''` in inflight_minute), and no
# engine busy clock (`gpu_busy_seconds`, SGLang) advancing on the host. A minute with
# neither utilisation figure is not idle: unknown is not idle.
GPU_IDLE = Query(
    "alerts.gpu_idle",
    """
    SELECT
        g.cluster AS cluster, g.host AS host, g.gpu_uuid AS gpu_uuid,
        max(g.idx) AS gpu_index, any(g.model) AS gpu_name, any(g.dep) AS deployment,
        count() AS minutes_reported,
        countIf(g.util IS NOT NULL AND g.util < {idle_pct:Float64} AND gb.busy_s = 0 AND hb.busy_s = 0)
            AS minutes_idle,
        max(g.util) AS peak_util_pct
    FROM
    (
        SELECT minute, cluster, host, gpu_uuid,
               max(gpu_index) AS idx, anyLast(gpu_name) AS model, anyLast(deployment) AS dep,
               coalesce(toFloat64(max(sm_activity_max)), toFloat64(max(util_gpu_max))) AS util
        FROM gpu_minute
        WHERE minute >= {since:DateTime64(6, 'UTC')} AND minute < {until:DateTime64(6, 'UTC')}
          AND ({cluster:String} = '' OR cluster = {cluster:String})
          AND ({host:String} = '' OR host = {host:String})
          AND ({deployment:String} = '' OR deployment = {deployment:String})
        GROUP BY minute, cluster, host, gpu_uuid
    ) AS g
"""
    + BUSY_JOINS
    + """    GROUP BY g.cluster, g.host, g.gpu_uuid
    ORDER BY cluster, host, gpu_uuid
    LIMIT 100000
    """,
)

# Latency percentiles per deployment and minute (all models of a deployment together).
# ITL is decode time / (output tokens − 1) per request, as the rollup records it. A
# minute whose requests reported no TTFT (or no decode) gives nan.
DEPLOYMENT_LATENCY = Query(
    "alerts.deployment_latency",
    """
    SELECT
        cluster, deployment, toDateTime64(minute, 0, 'UTC') AS minute_start,
        sum(requests) AS requests,
        quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(ttft_q)[3] AS ttft_p95_s,
        quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(tpot_q)[3] AS itl_p95_s
    FROM deployment_minute
    WHERE minute >= {since:DateTime64(6, 'UTC')} AND minute < {until:DateTime64(6, 'UTC')}
      AND ({cluster:String} = '' OR cluster = {cluster:String})
      AND ({deployment:String} = '' OR deployment = {deployment:String})
    GROUP BY cluster, deployment, minute
    ORDER BY cluster, deployment, minute_start
    LIMIT 100000
    """,
)

# Mean KV-cache use (0–1) per engine instance and minute, then counted per instance.
KV_CACHE = Query(
    "alerts.kv_cache",
    """
    SELECT
        cluster, deployment, host, instance,
        count() AS minutes_reported,
        countIf(usage >= {threshold:Float64}) AS minutes_saturated,
        argMax(usage, minute) AS last_usage,
        max(usage) AS peak_usage
    FROM
    (
        SELECT minute, cluster, deployment, host, instance, sum(value_sum) / sum(n) AS usage
        FROM engine_minute
        WHERE metric = 'kv_cache_usage'
          AND minute >= {since:DateTime64(6, 'UTC')} AND minute < {until:DateTime64(6, 'UTC')}
          AND ({cluster:String} = '' OR cluster = {cluster:String})
          AND ({deployment:String} = '' OR deployment = {deployment:String})
          AND ({host:String} = '' OR host = {host:String})
        GROUP BY minute, cluster, deployment, host, instance
    )
    GROUP BY cluster, deployment, host, instance
    ORDER BY cluster, deployment, host, instance
    LIMIT 100000
    """,
)

# The last minute each host sent GPU samples, for hosts heard from since `since`.
HOST_LAST_SEEN = Query(
    "alerts.host_last_seen",
    """
    SELECT cluster, host, toDateTime64(max(minute), 0, 'UTC') AS last_minute
    FROM gpu_minute
    WHERE minute >= {since:DateTime64(6, 'UTC')}
      AND ({cluster:String} = '' OR cluster = {cluster:String})
      AND ({host:String} = '' OR host = {host:String})
      AND ({deployment:String} = '' OR deployment = {deployment:String})
    GROUP BY cluster, host
    ORDER BY cluster, host
    LIMIT 100000
    """,
)
