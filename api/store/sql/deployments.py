"""Deployment queries: latency percentiles, phase split, load and cost per deployment,
read from the rollups (`deployment_minute` for short windows; `findings_deployment_day`
for the whole days of long ones and `findings_deployment_hour` for their other hours;
`engine_minute`/`findings_engine_hour`); and the requests explorer's sorted keyset pages
over raw `requests`.

Quantile states merge across unmerged rollup rows; the four levels are (0.5, 0.9, 0.95,
0.99). GPU-hours and cost per deployment come from the fleet read (`fleet.GPU_ROWS`).
"""

from api.store.gateway import Query

# Each read exists over the minute rollups and over the hourly/daily ones: a window longer
# than a day and a half reads hours (and days), a shorter one minutes. The rollups hold the
# same columns under different names; the branches line up by the names on the left. Table
# and column names are constants of this module, never input.
_COLUMNS = (
    "framework", "requests", "errors", "prompt_tokens", "cached_tokens", "output_tokens",
    "queue_s", "ttft_s", "prefill_s", "decode_s", "e2e_s", "phased",
    "ttft_q", "tpot_q", "e2e_q", "queue_q", "hosts",
)  # fmt: skip
_SOURCES = {
    "deployment_minute": (
        "framework", "requests", "errors", "prompt_tokens_sum", "cached_tokens_sum", "output_tokens_sum",
        "queue_sum", "ttft_sum", "prefill_sum", "decode_sum", "e2e_sum", "phased",
        "ttft_q", "tpot_q", "e2e_q", "queue_q", "hosts",
    ),
    "findings_deployment_hour": (
        "engine_framework", "n_requests", "n_errors", "prompt_tokens", "cached_tokens", "output_tokens",
        "queue_s", "ttft_s", "prefill_s", "decode_s", "e2e_s", "n_phased",
        "ttft_digest", "tpot_digest", "e2e_digest", "queue_digest", "host_set",
    ),
    "findings_deployment_day": (
        "day_framework", "day_requests", "day_errors", "day_prompt_tokens", "day_cached_tokens",
        "day_output_tokens", "day_queue_s", "day_ttft_s", "day_prefill_s", "day_decode_s", "day_e2e_s",
        "day_phased", "day_ttft", "day_tpot", "day_e2e", "day_queue", "day_hosts",
    ),
}  # fmt: skip

_DEPLOYMENT = "({deployment:String} = '' OR deployment = {deployment:String})"
_MINUTES = "minute >= {start:DateTime64(3, 'UTC')} AND minute < {end:DateTime64(3, 'UTC')}"
# Long windows: whole days [days_from, days_to) from the daily rollup, the hours around them
# ([start hour, days_from) and [days_to, end)) from the hourly one (api.routes.deployments).
_HOURS = (
    "((hour >= toStartOfHour({start:DateTime64(3, 'UTC')}) AND hour < {days_from:DateTime64(3, 'UTC')})"
    " OR (hour >= {days_to:DateTime64(3, 'UTC')} AND hour < {end:DateTime64(3, 'UTC')}))"
)
_DAYS = "day >= {days_from:DateTime64(3, 'UTC')} AND day < {days_to:DateTime64(3, 'UTC')}"


def _rows(res: str, time_as: str, extra: str = "") -> str:
    """The rollup rows of a window, columns named as in `_COLUMNS` (and `time_as`)."""

    def branch(table: str, time: str, where: str) -> str:
        listed = ", ".join(f"{c} AS {n}_" for c, n in zip(_SOURCES[table], _COLUMNS, strict=True))
        return (
            f"SELECT cluster, deployment AS dep_, model AS model_, {time} AS {time_as}, {listed}\n"
            f"        FROM {table} WHERE {where} AND {_DEPLOYMENT}{extra}"
        )

    if res == "minute":
        return branch("deployment_minute", "minute", _MINUTES)
    return (
        branch("findings_deployment_day", "day", _DAYS)
        + "\n        UNION ALL\n        "
        + branch("findings_deployment_hour", "hour", _HOURS)
    )


_MERGED = """
            sum(requests_) AS requests,
            sum(errors_) AS errors,
            sum(prompt_tokens_) AS prompt_tokens,
            sum(cached_tokens_) AS cached_tokens,
            sum(output_tokens_) AS output_tokens,
            sum(queue_s_) AS queue_s,
            sum(prefill_s_) AS prefill_s,
            sum(decode_s_) AS decode_s,
            sum(e2e_s_) AS e2e_s,
            sum(phased_) AS phased,
            quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(ttft_q_) AS ttft_q,
            quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(tpot_q_) AS tpot_q,
            quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(e2e_q_) AS e2e_q,
            quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(queue_q_) AS queue_q"""


def _summary(res: str) -> Query:
    return Query(
        f"deployments.summary.{res}",
        f"""
        SELECT
            cluster, dep_ AS deployment,
            groupUniqArray(model_) AS models,
            anyLast(framework_) AS framework,{_MERGED},
            uniqMerge(hosts_) AS hosts
        FROM ({_rows(res, "t_")})
        GROUP BY cluster, deployment
        ORDER BY cluster, deployment
        """,
    )


def _series(res: str) -> Query:
    return Query(
        f"deployments.series.{res}",
        f"""
        SELECT
            toStartOfInterval(t_, toIntervalSecond({{step_s:UInt32}})) AS bucket,{_MERGED}
        FROM ({_rows(res, "t_", " AND cluster = {cluster:String}")})
        GROUP BY bucket
        ORDER BY bucket
        """,
    )


# Engine gauges from the minute rollup or the hourly one (le = 0 only), named alike.
_ENGINE = {
    "minute": (
        "SELECT cluster, deployment, metric, host, instance, minute AS t_, value_sum AS total_, "
        "n AS samples_, value_max AS highest_ FROM engine_minute WHERE le = 0 AND " + _MINUTES
    ),
    "hour": (
        "SELECT cluster, deployment, metric, host, instance, hour AS t_, total AS total_, "
        "samples AS samples_, highest AS highest_ FROM findings_engine_hour "
        "WHERE hour >= toStartOfHour({start:DateTime64(3, 'UTC')}) AND hour < {end:DateTime64(3, 'UTC')}"
    ),
}


# Engine gauges (requests running and waiting, KV-cache use) per bucket: each instance's
# mean over the bucket, then summed over instances (running, waiting) or averaged (KV use).
def _engine_series(res: str) -> Query:
    return Query(
        f"deployments.engine_series.{res}",
        f"""
        SELECT bucket, metric,
               if(metric = 'kv_cache_usage', avg(instance_mean), sum(instance_mean)) AS value,
               max(instance_max) AS max_value
        FROM (
            SELECT toStartOfInterval(t_, toIntervalSecond({{step_s:UInt32}})) AS bucket,
                   metric, host, instance,
                   sum(total_) / sum(samples_) AS instance_mean, max(highest_) AS instance_max
            FROM ({_ENGINE[res]})
            WHERE {_DEPLOYMENT} AND cluster = {{cluster:String}}
              AND metric IN ('requests_running', 'requests_waiting', 'kv_cache_usage')
            GROUP BY bucket, metric, host, instance
        )
        GROUP BY bucket, metric
        ORDER BY bucket, metric
        """,
    )


# Per deployment over the window: the mean of each engine gauge (summed over instances for
# running and waiting, averaged for KV use) and its peak instance value.
def _engine_summary(res: str) -> Query:
    return Query(
        f"deployments.engine_summary.{res}",
        f"""
        SELECT cluster, deployment, metric,
               if(metric = 'kv_cache_usage', avg(instance_mean), sum(instance_mean)) AS mean_value,
               max(instance_max) AS max_value
        FROM (
            SELECT cluster, deployment, metric, host, instance,
                   sum(total_) / sum(samples_) AS instance_mean, max(highest_) AS instance_max
            FROM ({_ENGINE[res]})
            WHERE {_DEPLOYMENT}
              AND metric IN ('requests_running', 'requests_waiting', 'kv_cache_usage')
            GROUP BY cluster, deployment, metric, host, instance
        )
        GROUP BY cluster, deployment, metric
        """,
    )


DEPLOYMENT_SUMMARY = {res: _summary(res) for res in ("minute", "hour")}
DEPLOYMENT_SERIES = {res: _series(res) for res in ("minute", "hour")}
ENGINE_SERIES = {res: _engine_series(res) for res in ("minute", "hour")}
ENGINE_SUMMARY = {res: _engine_summary(res) for res in ("minute", "hour")}


# The requests explorer: one keyset query per sort order. The sort column comes from this
# fixed table, never from user input; the cursor is (sort value, row key) of the last row, the
# row key being span id then trace id (a request is both: span ids may repeat across traces).
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
          AND (time, concat(span_id, trace_id)) IN (
            SELECT time, concat(span_id, trace_id) AS row_key
            FROM requests
            WHERE {window}
              AND ({{deployment:String}} = '' OR deployment = {{deployment:String}})
              AND ({{model:String}} = '' OR model = {{model:String}})
              AND ({{host:String}} = '' OR host = {{host:String}})
              AND e2e_s >= {{min_e2e_s:Float64}}
              AND ({{status:String}} = '' OR ({{status:String}} = 'error') = (error != ''))
              AND ({{has_cursor:UInt8}} = 0
                   OR ({expr}, row_key) < ({{after_value:Float64}}, {{after_key:String}}))
            ORDER BY {expr} DESC, row_key DESC
            LIMIT 1 BY row_key
            LIMIT {{limit:UInt32}})
        ORDER BY sort_value DESC, span_id DESC, trace_id DESC
        LIMIT 1 BY span_id, trace_id
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
      AND ({trace_id:String} = '' OR trace_id = {trace_id:String})
    ORDER BY time DESC, trace_id
    LIMIT 1
    """,
)

# Filter choices for the explorer: deployments, models and hosts seen in the window.
REQUEST_FACETS = Query(
    "requests.facets",
    f"""
    SELECT deployment, groupUniqArray(100)(model) AS models, sum(n_requests) AS requests
    FROM findings_deployment_hour
    WHERE hour >= toStartOfHour({{start:DateTime64(3, 'UTC')}}) AND hour < {{end:DateTime64(3, 'UTC')}}
      AND {_DEPLOYMENT}
    GROUP BY deployment
    ORDER BY requests DESC
    LIMIT 200
    """,
)
