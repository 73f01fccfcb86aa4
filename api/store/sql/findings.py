"""Queries that feed the findings (`api.findings.engine`). They read the minute rollups
only, never raw rows.

Rollup tables are AggregatingMergeTree: a minute may still sit in several unmerged rows,
so every query re-aggregates. Per-minute tests (idle, held) are done on sets of minute
numbers (roaring bitmaps) per GPU, which is exact whatever the merge state and an order of
magnitude cheaper than grouping by minute; sums are additive and need no care. GROUP BY
on a prefix of the sorting key runs with `optimize_aggregation_in_order`.

Aliases never reuse a column name: ClickHouse substitutes aliases into expressions.
"""

from __future__ import annotations

from api.store.gateway import Query

# A row's utilisation: SM activity where GPM reported it in that row, else NVML utilisation.
_UTIL = "if(sm_activity_n > 0, toFloat64(sm_activity_max), toFloat64(util_gpu_max))"
_UTIL_SUM = "if(sm_activity_n > 0, sm_activity_sum, toFloat64(util_gpu_sum))"
_UTIL_N = "if(sm_activity_n > 0, sm_activity_n, util_gpu_n)"
_MINUTE_NO = "toUInt32(intDiv(toUInt32(minute), 60))"
_WINDOW = "minute >= {start:DateTime64(6)} AND minute < {end:DateTime64(6)}"


def _hours(bitmap: str, name: str) -> str:
    """Minutes of a bitmap counted per UTC hour: `{name}_hours` (hour numbers since the
    epoch) and `{name}_counts`. The minute list is sorted, so an hour starts where the
    hour number changes; counts are the gaps between those starts."""
    h = f"arrayMap(x -> intDiv(x, 60), bitmapToArray({bitmap}))"
    starts = f"arrayFilter((i, d) -> i = 1 OR d != 0, arrayEnumerate({h}), arrayDifference({h}))"
    return (
        f"arrayMap(i -> {h}[i], {starts}) AS {name}_hours, "
        f"arrayPopFront(arrayDifference(arrayPushBack({starts}, length({h}) + 1))) AS {name}_counts"
    )


GPU_USAGE = Query(
    "findings.gpu_usage",
    f"""
WITH
g AS (
    SELECT cluster, host, gpu_uuid,
        anyLast(gpu_name)                                            AS gpu_name_,
        anyLast(deployment)                                          AS deployment_,
        groupBitmapStateIf({_MINUTE_NO}, {_UTIL} IS NOT NULL)        AS measured_bm,
        groupBitmapStateIf({_MINUTE_NO}, {_UTIL} >= {{idle_pct:Float64}}) AS busy_bm,
        groupBitmapStateIf({_MINUTE_NO},
            ifNull(mem_used_max, 0) >= {{held_bytes:UInt64}} OR procs_max > 0) AS held_bm,
        max(mem_used_max)                                            AS mem_peak_,
        max(mem_total_max)                                           AS mem_total_,
        sum({_UTIL_SUM}) / nullIf(sum({_UTIL_N}), 0)                 AS util_mean_,
        sumIf({_UTIL_SUM}, {_UTIL} >= {{idle_pct:Float64}})
            / nullIf(sumIf({_UTIL_N}, {_UTIL} >= {{idle_pct:Float64}}), 0) AS util_busy_,
        sumIf(dram_bw_sum, sm_activity_n > 0 AND {_UTIL} >= {{idle_pct:Float64}})
            / nullIf(sumIf(sm_activity_n, sm_activity_n > 0 AND {_UTIL} >= {{idle_pct:Float64}}),
                0) AS dram_busy_,
        avgIf(toFloat64(util_mem_max),
            util_mem_max IS NOT NULL AND {_UTIL} >= {{idle_pct:Float64}}) AS mem_util_busy_,
        max(sm_activity_n) > 0                                       AS has_gpm_
    FROM gpu_minute
    WHERE {_WINDOW}
    GROUP BY cluster, host, gpu_uuid
),
f AS (
    SELECT cluster, host, gpu_uuid,
        groupBitmapState({_MINUTE_NO}) AS inflight_bm,
        sum(busy_s)                    AS busy_total_
    FROM inflight_minute
    WHERE {_WINDOW} AND gpu_uuid != '' AND busy_s > 0
    GROUP BY cluster, host, gpu_uuid
),
h AS (
    SELECT cluster, host, groupBitmapState(m) AS host_bm
    FROM (
        SELECT cluster, host, {_MINUTE_NO} AS m FROM inflight_minute
        WHERE {_WINDOW} AND gpu_uuid = '' AND busy_s > 0
        UNION ALL
        SELECT cluster, host, {_MINUTE_NO} AS m FROM engine_minute
        WHERE {_WINDOW} AND metric = 'gpu_busy_seconds' AND value_max > value_min
    )
    GROUP BY cluster, host
),
j AS (
    SELECT g.cluster AS cluster_, g.host AS host_, g.gpu_uuid AS gpu_uuid_, gpu_name_, deployment_,
        measured_bm, held_bm, mem_peak_, mem_total_, util_mean_, util_busy_, dram_busy_,
            mem_util_busy_, has_gpm_,
        bitmapAndnot(bitmapAndnot(bitmapAndnot(measured_bm, busy_bm), f.inflight_bm), h.host_bm) AS idle_bm,
        bitmapCardinality(f.inflight_bm) AS inflight_minutes_,
        f.busy_total_ AS inflight_busy_s_
    FROM g
    LEFT JOIN f ON f.cluster = g.cluster AND f.host = g.host AND f.gpu_uuid = g.gpu_uuid
    LEFT JOIN h ON h.cluster = g.cluster AND h.host = g.host
)
SELECT
    cluster_ AS cluster, host_ AS host, gpu_uuid_ AS gpu_uuid, gpu_name_ AS gpu_name,
        deployment_ AS deployment,
    minutes, idle_minutes, idle_held_minutes, streaks,
    {_hours("idle_bm", "idle")}, {_hours("measured_bm", "reported")},
    mem_peak_ AS mem_used_peak_bytes, mem_total_ AS mem_total_bytes,
    util_mean_ AS util_mean_pct, util_busy_ AS util_busy_mean_pct, dram_busy_ AS dram_bw_busy_mean_pct,
    mem_util_busy_ AS mem_util_busy_mean_pct, has_gpm_ AS has_gpm,
    inflight_minutes_ AS inflight_minutes, inflight_busy_s_ AS inflight_busy_s
FROM (
    SELECT *,
        bitmapCardinality(measured_bm)          AS minutes,
        bitmapCardinality(idle_bm)              AS idle_minutes,
        bitmapAndCardinality(idle_bm, held_bm)  AS idle_held_minutes,
        bitmapToArray(idle_bm)                  AS im,
        arrayMap(r -> (r[1] * 60, length(r)),
            arrayFilter(r -> length(r) >= {{streak_min:UInt32}},
                arraySplit((x, d) -> d != 1, im, arrayDifference(im)))) AS streaks
    FROM j
)
ORDER BY cluster, host, gpu_uuid
SETTINGS optimize_aggregation_in_order = 1, join_use_nulls = 0
""",
)

HOST_INFLIGHT = Query(
    "findings.host_inflight",
    f"""
SELECT cluster, host, anyLast(deployment) AS deployment_name, sum(busy_s) AS busy_total,
       uniqExact(minute) AS minutes_in_flight
FROM inflight_minute
WHERE {_WINDOW} AND gpu_uuid = '' AND busy_s > 0
GROUP BY cluster, host
""",
)

FLEET_BUCKETS = Query(
    "findings.fleet_buckets",
    """
SELECT cluster, deployment AS deployment_name,
       toUInt32(toStartOfInterval(bucket, toIntervalMinute({bucket_minutes:UInt32}))) AS bucket_start,
       uniqExactMerge(gpus) AS n_gpus,
       sum(util_sum)        AS util_total,
       sum(util_n)          AS util_count
FROM fleet_5m
WHERE bucket >= {start:DateTime64(6)} AND bucket < {end:DateTime64(6)} AND deployment != ''
GROUP BY cluster, deployment_name, bucket_start
ORDER BY cluster, deployment_name, bucket_start
SETTINGS optimize_aggregation_in_order = 1
""",
)

DEPLOYMENT_TRAFFIC = Query(
    "findings.deployment_traffic",
    f"""
WITH rate AS (
    SELECT cluster AS rc, deployment AS rd, count() AS rate_buckets, sum(r) AS rate_s1, sum(r * r) AS rate_s2,
           min(b) AS rate_first, max(b) AS rate_last
    FROM (
        SELECT cluster, deployment, toUInt32(toStartOfInterval(minute,
            toIntervalMinute({{bucket_minutes:UInt32}}))) AS b,
               toFloat64(sum(requests)) AS r
        FROM deployment_minute WHERE {_WINDOW}
        GROUP BY cluster, deployment, b
    )
    GROUP BY rc, rd
),
t AS (
    SELECT cluster, deployment AS deployment_name,
        arraySort(groupUniqArray(model))      AS models,
        anyLast(framework)                    AS framework_name,
        sum(requests)                         AS n_requests,
        sum(errors)                           AS n_errors,
        sum(prompt_tokens_sum)                AS prompt_tokens,
        sum(cached_tokens_sum)                AS cached_tokens,
        sum(output_tokens_sum)                AS output_tokens,
        sum(queue_sum)                        AS queue_s,
        sum(ttft_sum)                         AS ttft_s,
        sum(prefill_sum)                      AS prefill_s,
        sum(decode_sum)                       AS decode_s,
        sum(e2e_sum)                          AS e2e_s,
        sum(phased)                           AS n_phased,
        quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(ttft_q)  AS ttft_quantiles,
        quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(tpot_q)  AS tpot_quantiles,
        quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(e2e_q)   AS e2e_quantiles,
        quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(queue_q) AS queue_quantiles,
        sumMap(shape_hist)                    AS shape,
        sumMap(prompt_hist)                   AS prompts
    FROM deployment_minute
    WHERE {_WINDOW}
    GROUP BY cluster, deployment_name
)
SELECT t.*, rate.rate_buckets AS rate_buckets, rate.rate_s1 AS rate_s1, rate.rate_s2 AS rate_s2,
       rate.rate_first AS rate_first, rate.rate_last AS rate_last
FROM t
LEFT JOIN rate ON rate.rc = t.cluster AND rate.rd = t.deployment_name
ORDER BY t.cluster, t.deployment_name
""",
)

ENGINE_METRICS = (
    "requests_running",
    "requests_waiting",
    "kv_cache_usage",
    "preemptions",
    "prefix_cache_queries",
    "prefix_cache_hits",
    "prefix_cache_hit_rate",
    "spec_draft_tokens",
    "spec_accepted_tokens",
    "spec_drafts",
    "spec_accept_rate",
)

ENGINE_STATS = Query(
    "findings.engine_stats",
    f"""
SELECT cluster, deployment AS deployment_name, metric AS metric_name,
    sum(vs) / nullIf(sum(vn), 0) AS mean_value,
    max(vmax)                    AS max_value,
    sum(inc)                     AS increase,
    sum(mins)                    AS minutes,
    sum(sat)                     AS saturated,
    count()                      AS instances
FROM (
    SELECT cluster, deployment, metric, host, instance,
        sum(value_sum) AS vs, sum(n) AS vn, max(value_max) AS vmax,
        arrayFlatten(arrayMap(p -> [p.2, p.3],
            arraySort(p -> (p.1, p.2), groupArray((minute, value_min, value_max))))) AS seq,
        arraySum(arrayMap((cur, prev) -> if(cur >= prev, cur - prev, cur),
                          arrayPopFront(seq), arrayPopBack(seq))) AS inc,
        uniqExact(minute)                                     AS mins,
        uniqExactIf(minute, value_max >= {{kv_saturation:Float64}}) AS sat
    FROM engine_minute
    WHERE {_WINDOW} AND le = 0 AND metric IN {{metrics:Array(String)}}
    GROUP BY cluster, deployment, metric, host, instance
)
GROUP BY cluster, deployment_name, metric_name
ORDER BY cluster, deployment_name, metric_name
SETTINGS optimize_aggregation_in_order = 1
""",
)
