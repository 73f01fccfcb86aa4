"""Queries that feed the findings (`api.findings.engine`). They read rollups only, never
raw rows: the daily and hourly ones of migration 0003 for the whole days and hours they
hold, the minute rollups of 0002 for the rest. `api.findings.spans` cuts a window into
these parts and names the parameters (`hours_from`, `days_from`, `head_from`, …).

Per GPU and per engine instance, the hourly rows are returned as they are stored, in key
order, and merged by `api.findings.gpu_hours` / `api.findings.engine_hours` (an unmerged
key is several adjacent rows): ClickHouse's GROUP BY on string keys and its per-query
planning cost more than the arithmetic here. Minute rows, read only for short windows and
hours the hourly rollups lack, come in the same shape (`*_MINUTES` queries, grouped per
hour). Quantile states can only be merged by ClickHouse: `DEPLOYMENT_TRAFFIC` does that,
over day states where it can.

Minute-level facts are 64-bit masks per hour (bit m = minute m), merged by OR, so a minute
is counted once however its rows are split. Aliases never reuse a column name: ClickHouse
substitutes aliases into expressions.
"""

from __future__ import annotations

from api.store.gateway import Query

ROLLUPS_SINCE = Query(
    "findings.rollups_since",
    "SELECT toUInt32(minOrNull(applied_at)) FROM schema_migrations WHERE version = {version:UInt32}",
)
"""When the migration that made the hourly and daily rollups ran (epoch seconds)."""

ROLLUPS_MIGRATION = 3

READ_BY_FINDINGS = (
    "schema_migrations",
    "gpu_minute",
    "inflight_minute",
    "deployment_minute",
    "engine_minute",
    "findings_gpu_hour",
    "findings_fleet_5m",
    "findings_deployment_hour",
    "findings_deployment_day",
    "findings_engine_hour",
)
"""Every table a finding is computed from (the tables of `DATA_VERSION`)."""

DATA_VERSION = Query(
    "findings.data_version",
    """
    SELECT groupBitXor(cityHash64(table, name)) AS digest, count() AS parts
    FROM system.parts
    WHERE database = currentDatabase() AND active AND table IN {tables:Array(String)}
    """,
)
"""The active parts of some tables: parts are immutable, and every insert, merge or mutation
replaces some, so equal answers mean equal data."""

HOURS = "hour >= {hours_from:DateTime64(6)} AND hour < {hours_to:DateTime64(6)}"
MINUTES = (
    "((minute >= {head_from:DateTime64(6)} AND minute < {head_to:DateTime64(6)})"
    " OR (minute >= {tail_from:DateTime64(6)} AND minute < {tail_to:DateTime64(6)}))"
)
DAYS = "day >= {days_from:DateTime64(6)} AND day < {days_to:DateTime64(6)}"
HOUR_EDGES = (
    "((hour >= {hour_head_from:DateTime64(6)} AND hour < {hour_head_to:DateTime64(6)})"
    " OR (hour >= {hour_tail_from:DateTime64(6)} AND hour < {hour_tail_to:DateTime64(6)}))"
)
_BIT = "bitShiftLeft(toUInt64(1), toMinute(minute))"

# Read a table of even a few granules on every thread: ClickHouse's default (20 granules a
# thread) reads the GPU-hours of 30 days × 256 GPUs (184 thousand rows) on one, and the
# per-minute map `low` (6 million entries) makes `findings.gpu_hours` the costliest read of
# the findings (1.5x faster on two cores). Results do not depend on it: the GPUs and their
# hours are put in order afterwards (`api.findings.gpu_hours`, `api.routes.fleet_rows`).
PARALLEL_READ = "merge_tree_min_rows_for_concurrent_read = 8192, merge_tree_min_bytes_for_concurrent_read = 1"


def _bits(keys: str, values: str, test: str) -> str:
    """A minute mask from a per-minute map: the minutes whose value passes `test` (on v)."""
    return f"arraySum(arrayMap((k, v) -> bitShiftLeft(toUInt64({test}), k), {keys}, {values}))"


# --- per GPU (or host, gpu_uuid = '') --------------------------------------------------------
#
# One row per GPU with its sums over the window and, per hour, its minute masks (arrays in
# one order; an hour may appear twice where rollup rows are not merged yet). busy: minutes
# whose peak utilisation reached the idle threshold; held: minutes with at least the held
# memory in use, or a process. busy_*: sums over the minutes that peaked at 20 % or more
# (the means "while busy"). Aggregated in the table's order: no hash table.

_GPU_SUMS = (
    "util_total",
    "util_count",
    "busy_util_total",
    "busy_util_count",
    "busy_dram_total",
    "busy_dram_count",
    "busy_mem_util_total",
    "busy_mem_util_count",
    "inflight_s",
)
_GPU_PER_HOUR = (
    "reported",
    "measured",
    "busy",
    "held",
    "inflight",
    "engine_busy",
)


_GPU_DEFAULTS = {
    "name": "''",
    "deployment": "''",
    "requests_for": "''",
    **dict.fromkeys(_GPU_PER_HOUR, "0"),
    **dict.fromkeys(_GPU_SUMS, "0"),
    "gpm": "0",
    "mem_peak": "NULL",
    "mem_total": "NULL",
}


def _per_gpu(hour: str, *, label_column: bool = False, **values: str) -> str:
    """The per-GPU SELECT list from per-row expressions (`hour`: the row's hour; the masks
    and sums by name; the rest default to nothing), in one set of types, so that results
    of several tables line up. `label_column`: the deployment is a LowCardinality column,
    collected as it is (`api.findings.columns.Labels` reads either type; turning each
    row's value into a String first makes the query several times slower)."""
    unknown = set(values) - set(_GPU_DEFAULTS)
    if unknown:
        raise ValueError(f"not per-GPU columns: {sorted(unknown)}")
    v = _GPU_DEFAULTS | values
    masks = ",\n    ".join(f"groupArray(toUInt64({v[m]})) AS {m}_minutes" for m in _GPU_PER_HOUR)
    sums = ",\n    ".join(f"sum(toFloat64({v[s]})) AS {s}_sum" for s in _GPU_SUMS)
    deployment = v["deployment"] if label_column else f"toString({v['deployment']})"
    return f"""toString(max({v["name"]})) AS gpu_name, toString(max({v["requests_for"]})) AS requests_for,
    groupArray(toUInt32({hour})) AS hours, groupArray({deployment}) AS deployments,
    {masks},
    {sums},
    toUInt8(max({v["gpm"]})) AS gpm_seen,
    max(CAST({v["mem_peak"]} AS Nullable(UInt64))) AS mem_used_peak_bytes,
    max(CAST({v["mem_total"]} AS Nullable(UInt64))) AS mem_total_bytes"""


# Whole-percent peaks against the idle threshold rounded up, both UInt8: comparing each
# minute with a Float64 doubles the query's time.
_AT_LEAST_IDLE = "v >= toUInt8(greatest(0, least(255, ceil({idle_pct:Float64}))))"

GPU_HOURS = Query(
    "findings.gpu_hours",
    f"""
SELECT cluster, host, gpu_uuid,
    {
        _per_gpu(
            "hour",
            label_column=True,
            name="gpu_model",
            deployment="gpu_deployment",
            requests_for="request_deployment",
            reported="reported",
            measured="measured",
            busy=f"bitOr(active, {_bits('low.1', 'low.2', _AT_LEAST_IDLE)})",
            held=f"bitOr(procs, {_bits('low.1', 'low.3', 'v >= {held_mib:UInt32}')})",
            inflight="inflight",
            engine_busy="engine_busy",
            **{s: s for s in _GPU_SUMS},
            gpm="gpm",
            mem_peak="mem_used_peak",
            mem_total="mem_total_peak",
        )
    }
FROM findings_gpu_hour
WHERE {HOURS}
GROUP BY cluster, host, gpu_uuid
SETTINGS optimize_aggregation_in_order = 1, {PARALLEL_READ}
""",
)


def _hours_from_minutes(source: str, ident: str, **values: str) -> str:
    """A branch of GPU_MINUTES: the minute rows of `source` grouped per GPU (`ident`) and
    hour (the masks ORed, the sums summed), then per GPU as GPU_HOURS gives them."""
    v = _GPU_DEFAULTS | values
    per_hour = ",\n            ".join(
        [f"max({v[c]}) AS {c}_h" for c in ("name", "deployment", "requests_for", "gpm")]
        + [f"max({v[c]}) AS {c}_h" for c in ("mem_peak", "mem_total")]
        + [f"groupBitOr(toUInt64({v[m]})) AS {m}_h" for m in _GPU_PER_HOUR]
        + [f"sum(toFloat64({v[s]})) AS {s}_h" for s in _GPU_SUMS]
    )
    hour_columns: dict[str, str] = {c: f"{c}_h" for c in _GPU_DEFAULTS}
    per_gpu = _per_gpu("hour_", label_column=False, **hour_columns)
    return f"""SELECT cluster, host, gpu_uuid,
    {per_gpu}
FROM (
    SELECT cluster, host, {ident}, toStartOfHour(minute) AS hour_,
            {per_hour}
    FROM {source}
    GROUP BY cluster, host, gpu_uuid, hour_
)
GROUP BY cluster, host, gpu_uuid"""


_GPU_MINUTE_ROWS = f"""(
        SELECT *, {_BIT} AS bit_,
            if(sm_activity_n > 0, sm_activity_max, util_gpu_max) AS peak_,
            ifNull(peak_ >= 20, 0) AS active_,
            if(sm_activity_n > 0, sm_activity_sum, toFloat64(util_gpu_sum)) AS util_s_,
            if(sm_activity_n > 0, sm_activity_n, util_gpu_n) AS util_n_
        FROM gpu_minute
        WHERE {MINUTES}
    )"""
_FROM_TELEMETRY = _hours_from_minutes(
    _GPU_MINUTE_ROWS,
    "gpu_uuid",
    name="gpu_name",
    deployment="deployment",
    reported="bit_",
    measured="if(peak_ IS NULL, 0, bit_)",
    busy="if(ifNull(peak_ >= {idle_pct:Float64}, 0), bit_, 0)",
    held="if(ifNull(mem_used_max, 0) >= toUInt64({held_mib:UInt32}) * 1048576 OR procs_max > 0, bit_, 0)",
    util_total="if(peak_ IS NULL, 0, util_s_)",
    util_count="if(peak_ IS NULL, 0, util_n_)",
    busy_util_total="if(active_, util_s_, 0)",
    busy_util_count="if(active_, util_n_, 0)",
    busy_dram_total="if(active_ AND sm_activity_n > 0, dram_bw_sum, 0)",
    busy_dram_count="if(active_, sm_activity_n, 0)",
    busy_mem_util_total="if(active_, ifNull(util_mem_max, 0), 0)",
    busy_mem_util_count="active_ AND util_mem_max IS NOT NULL",
    gpm="sm_activity_n > 0",
    mem_peak="mem_used_max",
    mem_total="mem_total_max",
)
_FROM_REQUESTS = _hours_from_minutes(
    f"(SELECT * FROM inflight_minute WHERE {MINUTES})",
    "gpu_uuid",
    requests_for="deployment",
    inflight=f"if(busy_s > 0, {_BIT}, 0)",
    inflight_s="busy_s",
)
_FROM_ENGINE = _hours_from_minutes(
    f"(SELECT * FROM engine_minute WHERE {MINUTES} AND metric = 'gpu_busy_seconds'"
    " AND value_max > value_min)",
    "'' AS gpu_uuid",
    engine_busy=_BIT,
)

# The same from the minute rollups, for `head` and `tail`, utilisation and its sums as the
# hourly view takes them. Up to three rows per GPU (telemetry, requests, the host's engine).
GPU_MINUTES = Query(
    "findings.gpu_minutes",
    f"{_FROM_TELEMETRY}\n\nUNION ALL\n\n{_FROM_REQUESTS}\n\nUNION ALL\n\n{_FROM_ENGINE}\n",
)

# --- per deployment and 5 minutes: fleet sizing and the arrival rate ---------------------

# One row per deployment, its 5-minute buckets as arrays (a bucket may appear twice where
# rollup rows are not merged yet: the sums add up).
FLEET_5M = Query(
    "findings.fleet_5m",
    """
SELECT cluster, deployment,
    groupArray(toUInt32(bucket)) AS buckets, groupArray(util_total) AS util_totals,
    groupArray(util_count) AS util_counts, groupArray(n_requests) AS requests
FROM findings_fleet_5m
WHERE bucket >= {hours_from:DateTime64(6)} AND bucket < {hours_to:DateTime64(6)}
GROUP BY cluster, deployment
SETTINGS optimize_aggregation_in_order = 1
""",
)

FLEET_MINUTES = Query(
    "findings.fleet_minutes",
    f"""
SELECT cluster, deployment,
    groupArray(toUInt32(bucket_)) AS buckets, groupArray(util_s) AS util_totals,
    groupArray(util_n) AS util_counts, groupArray(n) AS requests
FROM (
    SELECT cluster, deployment, toStartOfFiveMinutes(minute) AS bucket_,
        sum(if(peak_ IS NULL, 0, if(sm_activity_n > 0, sm_activity_sum, toFloat64(util_gpu_sum)))) AS util_s,
        sum(toUInt64(if(peak_ IS NULL, 0, if(sm_activity_n > 0, sm_activity_n, util_gpu_n)))) AS util_n,
        toUInt64(0) AS n
    FROM (
        SELECT *, if(sm_activity_n > 0, sm_activity_max, util_gpu_max) AS peak_
        FROM gpu_minute
        WHERE {MINUTES}
    )
    WHERE deployment != ''
    GROUP BY cluster, deployment, bucket_

    UNION ALL

    SELECT cluster, deployment, toStartOfFiveMinutes(minute), toFloat64(0), toUInt64(0), sum(requests)
    FROM deployment_minute
    WHERE {MINUTES}
    GROUP BY cluster, deployment, toStartOfFiveMinutes(minute)
)
GROUP BY cluster, deployment
""",
)

# --- per deployment: requests, latency quantiles, histograms -----------------------------

# The three rollups hold the same columns in the same types under different names: the
# branches of the UNION line up by position.
_DEPLOYMENT_COLUMNS = {
    "findings_deployment_day": (
        "day_framework", "day_requests", "day_errors", "day_prompt_tokens", "day_cached_tokens",
        "day_output_tokens", "day_phased", "day_queue_s", "day_ttft_s", "day_prefill_s", "day_decode_s",
        "day_e2e_s", "day_ttft", "day_tpot", "day_queue", "day_shape", "day_prompts",
    ),
    "findings_deployment_hour": (
        "engine_framework", "n_requests", "n_errors", "prompt_tokens", "cached_tokens", "output_tokens",
        "n_phased", "queue_s", "ttft_s", "prefill_s", "decode_s", "e2e_s", "ttft_digest", "tpot_digest",
        "queue_digest", "shape", "prompts",
    ),
    "deployment_minute": (
        "framework", "requests", "errors", "prompt_tokens_sum", "cached_tokens_sum", "output_tokens_sum",
        "phased", "queue_sum", "ttft_sum", "prefill_sum", "decode_sum", "e2e_sum", "ttft_q", "tpot_q",
        "queue_q", "shape_hist", "prompt_hist",
    ),
}  # fmt: skip
_DEPLOYMENT_NAMES = (
    "fw_", "req_", "err_", "prompt_", "cached_", "output_", "phased_", "queue_", "ttft_", "prefill_",
    "decode_", "e2e_", "ttft_d_", "tpot_d_", "queue_d_", "shape_", "prompts_",
)  # fmt: skip


def _deployment_branch(table: str, where: str, *, named: bool = False) -> str:
    columns = _DEPLOYMENT_COLUMNS[table]
    listed = [f"{c} AS {n}" for c, n in zip(columns, _DEPLOYMENT_NAMES, strict=True)] if named else columns
    head = "deployment AS dep_, model AS model_" if named else "deployment, model"
    return f"SELECT cluster, {head}, {', '.join(listed)}\n    FROM {table}\n    WHERE {where}"


# Per deployment over the window: sums, merged quantile states and histograms. (End-to-end
# latency quantiles are not kept: no finding reads them, and merging states is most of
# this query's cost.)
DEPLOYMENT_TRAFFIC = Query(
    "findings.deployment_traffic",
    f"""
SELECT cluster, dep_ AS deployment_name,
    arraySort(groupUniqArray(model_))              AS models,
    anyLast(fw_)                                  AS framework_name,
    sum(req_)                                     AS n_requests,
    sum(err_)                                     AS n_errors,
    sum(prompt_)                                  AS prompt_tokens,
    sum(cached_)                                  AS cached_tokens,
    sum(output_)                                  AS output_tokens,
    sum(queue_)                                   AS queue_s,
    sum(ttft_)                                    AS ttft_s,
    sum(prefill_)                                 AS prefill_s,
    sum(decode_)                                  AS decode_s,
    sum(e2e_)                                     AS e2e_s,
    sum(phased_)                                  AS n_phased,
    quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(ttft_d_)  AS ttft_quantiles,
    quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(tpot_d_)  AS tpot_quantiles,
    quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(queue_d_) AS queue_quantiles,
    sumMap(shape_)                                AS shape,
    sumMap(prompts_)                              AS prompts
FROM (
    {_deployment_branch("findings_deployment_day", DAYS, named=True)}
    UNION ALL
    {_deployment_branch("findings_deployment_hour", HOUR_EDGES)}
    UNION ALL
    {_deployment_branch("deployment_minute", MINUTES)}
)
GROUP BY cluster, deployment_name
ORDER BY cluster, deployment_name
""",
)

# --- per engine instance and hour ----------------------------------------------------------

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

# One row per instance and metric, its hours as arrays (in one order; an hour may appear
# twice where rollup rows are not merged yet). saturated: minutes whose peak KV-cache usage
# reached the saturation threshold.
_SEGMENTS = """groupArray(toUInt32({start})) AS starts, groupArray({minutes}) AS minute_masks,
    groupArray({saturated}) AS saturated_masks, groupArray({lowest}) AS lows, groupArray({highest}) AS highs,
    groupArray(toUInt32({first_at})) AS first_ats, groupArray({first_value}) AS first_values,
    groupArray(toUInt32({last_at})) AS last_ats, groupArray({last_value}) AS last_values,
    sum({total}) AS value_total, sum({samples}) AS value_samples"""

ENGINE_HOURS = Query(
    "findings.engine_hours",
    f"""
SELECT cluster, deployment, metric, host, instance,
    {
        _SEGMENTS.format(
            start="hour",
            minutes="minutes",
            saturated=_bits("kv_high.1", "kv_high.2", "v >= {kv_saturation:Float64}"),
            lowest="lowest",
            highest="highest",
            first_at="first.1",
            first_value="first.2",
            last_at="last.1",
            last_value="last.2",
            total="total",
            samples="samples",
        )
    }
FROM findings_engine_hour
WHERE {HOURS} AND metric IN {{metrics:Array(String)}}
GROUP BY cluster, deployment, metric, host, instance
SETTINGS optimize_aggregation_in_order = 1
""",
)

# The same from the minute rollups: every minute row a segment (rows of one minute are
# merged afterwards).
ENGINE_MINUTES = Query(
    "findings.engine_minutes",
    f"""
SELECT cluster, deployment, metric, host, instance,
    {
        _SEGMENTS.format(
            start="minute",
            minutes=_BIT,
            saturated=f"if(metric = 'kv_cache_usage' AND value_max >= {{kv_saturation:Float64}}, {_BIT}, 0)",
            lowest="value_min",
            highest="value_max",
            first_at="minute",
            first_value="value_min",
            last_at="minute",
            last_value="value_max",
            total="value_sum",
            samples="n",
        )
    }
FROM engine_minute
WHERE {MINUTES} AND le = 0 AND metric IN {{metrics:Array(String)}}
GROUP BY cluster, deployment, metric, host, instance
SETTINGS optimize_aggregation_in_order = 1
""",
)
