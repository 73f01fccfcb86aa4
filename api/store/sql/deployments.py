"""Deployment queries: latency percentiles, phase split, load and cost per deployment,
read from the rollups (`deployment_minute`/`_hour`, `engine_minute`/`_hour`); and the
requests explorer's sorted keyset pages over raw `requests`.

Quantile states merge across unmerged rollup rows; the four levels are (0.5, 0.9, 0.95,
0.99). GPU-hours and cost per deployment come from the fleet read (`fleet.GPU_HOURS`).
"""

from api.store.gateway import Query
from api.store.sql.fleet import WINDOW_BOUNDS, in_window_mask

# Each read exists twice, over the minute and the hourly rollups (same columns): a window
# longer than a day and a half reads hours, a shorter one minutes. The table names below are
# constants of this module, never input.


def _filter(time: str) -> str:
    return (
        f"""
    {time} >= toStartOfHour({{start:DateTime64(3, 'UTC')}}) AND {time} < {{end:DateTime64(3, 'UTC')}}
    AND ({{deployment:String}} = '' OR deployment = {{deployment:String}})
    """
        if time == "hour"
        else f"""
    {time} >= {{start:DateTime64(3, 'UTC')}} AND {time} < {{end:DateTime64(3, 'UTC')}}
    AND ({{deployment:String}} = '' OR deployment = {{deployment:String}})
    """
    )


def _summary(table: str, time: str) -> Query:
    return Query(
        f"deployments.summary.{time}",
        f"""
        SELECT
            cluster, deployment,
            groupUniqArray(model) AS models,
            anyLast(framework) AS framework,
            sum(requests) AS requests,
            sum(errors) AS errors,
            sum(prompt_tokens_sum) AS prompt_tokens,
            sum(cached_tokens_sum) AS cached_tokens,
            sum(output_tokens_sum) AS output_tokens,
            sum(queue_sum) AS queue_s,
            sum(prefill_sum) AS prefill_s,
            sum(decode_sum) AS decode_s,
            sum(e2e_sum) AS e2e_s,
            sum(phased) AS phased,
            quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(ttft_q) AS ttft_q,
            quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(tpot_q) AS tpot_q,
            quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(e2e_q) AS e2e_q,
            quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(queue_q) AS queue_q,
            uniqMerge(hosts) AS hosts
        FROM {table}
        WHERE {_filter(time)}
        GROUP BY cluster, deployment
        ORDER BY cluster, deployment
        """,
    )


def _series(table: str, time: str) -> Query:
    return Query(
        f"deployments.series.{time}",
        f"""
        SELECT
            toStartOfInterval({time}, toIntervalSecond({{step_s:UInt32}})) AS bucket,
            sum(requests) AS requests,
            sum(errors) AS errors,
            sum(output_tokens_sum) AS output_tokens,
            sum(prompt_tokens_sum) AS prompt_tokens,
            sum(queue_sum) AS queue_s,
            sum(prefill_sum) AS prefill_s,
            sum(decode_sum) AS decode_s,
            sum(e2e_sum) AS e2e_s,
            quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(ttft_q) AS ttft_q,
            quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(tpot_q) AS tpot_q,
            quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(e2e_q) AS e2e_q,
            quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(queue_q) AS queue_q
        FROM {table}
        WHERE {_filter(time)} AND cluster = {{cluster:String}}
        GROUP BY bucket
        ORDER BY bucket
        """,
    )


# Engine gauges (requests running and waiting, KV-cache use) per bucket: each instance's
# mean over the bucket, then summed over instances (running, waiting) or averaged (KV use).
def _engine_series(table: str, time: str) -> Query:
    return Query(
        f"deployments.engine_series.{time}",
        f"""
        SELECT bucket, metric,
               if(metric = 'kv_cache_usage', avg(instance_mean), sum(instance_mean)) AS value,
               max(instance_max) AS max_value
        FROM (
            SELECT toStartOfInterval({time}, toIntervalSecond({{step_s:UInt32}})) AS bucket,
                   metric, host, instance,
                   sum(value_sum) / sum(n) AS instance_mean, max(value_max) AS instance_max
            FROM {table}
            WHERE {_filter(time)} AND cluster = {{cluster:String}}
              AND metric IN ('requests_running', 'requests_waiting', 'kv_cache_usage') AND le = 0
            GROUP BY bucket, metric, host, instance
        )
        GROUP BY bucket, metric
        ORDER BY bucket, metric
        """,
    )


# Per deployment over the window: the mean of each engine gauge (summed over instances for
# running and waiting, averaged for KV use) and its peak instance value.
def _engine_summary(table: str, time: str) -> Query:
    return Query(
        f"deployments.engine_summary.{time}",
        f"""
        SELECT cluster, deployment, metric,
               if(metric = 'kv_cache_usage', avg(instance_mean), sum(instance_mean)) AS mean_value,
               max(instance_max) AS max_value
        FROM (
            SELECT cluster, deployment, metric, host, instance,
                   sum(value_sum) / sum(n) AS instance_mean, max(value_max) AS instance_max
            FROM {table}
            WHERE {_filter(time)}
              AND metric IN ('requests_running', 'requests_waiting', 'kv_cache_usage') AND le = 0
            GROUP BY cluster, deployment, metric, host, instance
        )
        GROUP BY cluster, deployment, metric
        """,
    )


DEPLOYMENT_SUMMARY = {
    "minute": _summary("deployment_minute", "minute"),
    "hour": _summary("deployment_hour", "hour"),
}
DEPLOYMENT_SERIES = {
    "minute": _series("deployment_minute", "minute"),
    "hour": _series("deployment_hour", "hour"),
}
ENGINE_SERIES = {
    "minute": _engine_series("engine_minute", "minute"),
    "hour": _engine_series("engine_hour", "hour"),
}
ENGINE_SUMMARY = {
    "minute": _engine_summary("engine_minute", "minute"),
    "hour": _engine_summary("engine_hour", "hour"),
}


# GPU-hours per deployment, host and GPU model over the window (priced in Python): minutes
# reported, from the hourly rollup's masks, the first and last hour cut at the minute.
DEPLOYMENT_GPU_HOURS = Query(
    "deployments.gpu_hours",
    f"""
    WITH{WINDOW_BOUNDS}
    SELECT cluster, deployment, host, gpu_name, sum(minutes) / 60 AS gpu_hours, uniqExact(gpu_uuid) AS gpus
    FROM (
        SELECT cluster, host, gpu_uuid, hour, max(deployment) AS deployment, max(gpu_name) AS gpu_name,
               bitCount(bitAnd(groupBitOr(reported), {in_window_mask("hour")})) AS minutes
        FROM gpu_hour
        WHERE hour >= toStartOfHour({{start:DateTime64(3, 'UTC')}}) AND hour < {{end:DateTime64(3, 'UTC')}}
          AND gpu_uuid != ''
        GROUP BY cluster, host, gpu_uuid, hour
    )
    WHERE deployment != '' AND ({{deployment:String}} = '' OR deployment = {{deployment:String}})
    GROUP BY cluster, deployment, host, gpu_name
    """,
)


# The requests explorer: one keyset query per sort order. The sort column comes from this
# fixed table, never from user input; the cursor is (sort value, span id) of the last row.
_EXPLORE_SORTS = {
    "time": "toFloat64(time)",
    "e2e": "e2e_s",
    "ttft": "ifNull(ttft_s, -1)",
    "output_tokens": "toFloat64(ifNull(output_tokens, 0))",
    "prompt_tokens": "toFloat64(ifNull(prompt_tokens, 0))",
}


def _explore(key: str, expr: str) -> Query:
    # Two steps: the page's keys from the few columns the filters and the sort need, then the
    # whole rows of just those keys (reading every column of a day's requests costs ~10×).
    window = "time >= {since:DateTime64(6, 'UTC')} AND time < {until:DateTime64(6, 'UTC')}"
    return Query(
        f"requests.explore.{key}",
        f"""
        SELECT
            time, trace_id, span_id, request_id, cluster, host, deployment, model, framework,
            prompt_tokens, cached_tokens, output_tokens, queue_s, ttft_s, prefill_s, decode_s, e2e_s,
            finish_reason, error, gpu_uuids, {expr} AS sort_value
        FROM requests
        WHERE {window}
          AND (time, span_id) IN (
            SELECT time, span_id
            FROM requests
            WHERE {window}
              AND ({{deployment:String}} = '' OR deployment = {{deployment:String}})
              AND ({{model:String}} = '' OR model = {{model:String}})
              AND ({{host:String}} = '' OR host = {{host:String}})
              AND e2e_s >= {{min_e2e_s:Float64}}
              AND ({{status:String}} = '' OR ({{status:String}} = 'error') = (error != ''))
              AND ({{has_cursor:UInt8}} = 0
                   OR ({expr}, span_id) < ({{after_value:Float64}}, {{after_span:String}}))
            ORDER BY {expr} DESC, span_id DESC
            LIMIT 1 BY span_id
            LIMIT {{limit:UInt32}})
        ORDER BY sort_value DESC, span_id DESC
        LIMIT 1 BY span_id
        LIMIT {{limit:UInt32}}
        """,
    )


EXPLORE_REQUESTS = {key: _explore(key, expr) for key, expr in _EXPLORE_SORTS.items()}

REQUEST_BY_SPAN = Query(
    "requests.by_span",
    """
    SELECT time, trace_id, span_id, request_id, cluster, host, deployment, model, framework,
           prompt_tokens, cached_tokens, output_tokens, queue_s, ttft_s, prefill_s, decode_s, e2e_s,
           finish_reason, error, gpu_uuids
    FROM requests
    WHERE span_id = {span_id:String} AND time >= {since:DateTime64(6, 'UTC')}
    LIMIT 1
    """,
)

# Filter choices for the explorer: deployments, models and hosts seen in the window.
REQUEST_FACETS = Query(
    "requests.facets",
    f"""
    SELECT deployment, groupUniqArray(100)(model) AS models, sum(requests) AS requests
    FROM deployment_hour
    WHERE {_filter("hour")}
    GROUP BY deployment
    ORDER BY requests DESC
    LIMIT 200
    """,
)
