"""Fleet queries: every GPU over a window, from the hourly rollup `findings_gpu_hour` (one
row per GPU-hour, with minute masks: reported, in flight, busy at 20 %, and each quieter
minute's peak utilisation), and from `gpu_minute` only for the fine-grained series of
windows of a day or less.

A GPU-minute is idle when its busiest utilisation is below the idle threshold and no
request was in flight on that GPU (or, for spans that named no GPU, on its host). Minutes
are bits of a per-hour mask, so rows of one minute that were not merged yet still count
once, and the window is cut at the minute, not the hour. "Utilisation" is SM activity where NVML GPM
reports it (Hopper and newer), else NVML's kernel-running percentage (docs/findings.md).
"""

from api.store.gateway import Query
from api.store.sql.findings import PARALLEL_READ

_HOURS = """
    hour >= toStartOfHour({start:DateTime64(3, 'UTC')}) AND hour < {end:DateTime64(3, 'UTC')}
"""


# Bit k set where some sample of minute k reached the idle threshold: minutes busy at 20 %
# (`active`) and the quieter minutes of `low` whose peak reached it (migrations 0003, 0005).
# Peaks are whole percents, so the threshold is compared rounded up, as a UInt8 like them
# (comparing each with a Float64 doubles the query's time).
BUSY_BITS = (
    "bitOr(active, arraySum(arrayMap((k, v) -> bitShiftLeft(toUInt64(v >= "
    "toUInt8(greatest(0, least(255, ceil({idle_pct:Float64}))))), k), low.1, low.2)))"
)

# The rollup's rows over the window as they are stored (an unmerged GPU-hour is several
# rows), for `api.routes.fleet_rows` to merge per GPU-hour and add up in numpy: ClickHouse's
# GROUP BY on string keys and the join of each GPU-hour to its host's in-flight minutes cost
# several times more than the arithmetic. Host rows (gpu_uuid = '': requests that named no
# GPU) come along for the in-flight minutes. Strings come as dictionaries. With a
# deployment: only the GPUs (and hosts) that served it in the window; which of their hours
# did is decided after the merge.
GPU_ROWS = Query(
    "fleet.gpu_rows",
    f"""
    SELECT
        cluster, host, gpu_uuid, toUInt32(hour) AS hour_s,
        reported, procs, inflight,
        if({{idle_pct:Float64}} <= 0, reported, {BUSY_BITS}) AS busy,
        gpu_idx, gpu_model, gpu_deployment,
        util_total, util_count, util_peak, power_total_mw, power_count,
        mem_used_peak, mem_total_peak
    FROM findings_gpu_hour
    WHERE {_HOURS}
      AND ({{cluster:String}} = '' OR cluster = {{cluster:String}})
      AND ({{gpu_uuid:String}} = '' OR gpu_uuid IN ({{gpu_uuid:String}}, ''))
      AND ({{deployment:String}} = '' OR (
            (cluster, host) IN (SELECT cluster, host FROM findings_gpu_hour
                                WHERE {_HOURS} AND gpu_deployment = {{deployment:String}})
            AND (gpu_uuid = '' OR gpu_uuid IN (SELECT gpu_uuid FROM findings_gpu_hour
                                WHERE {_HOURS} AND gpu_deployment = {{deployment:String}}))))
    SETTINGS output_format_arrow_low_cardinality_as_dictionary = 1, {PARALLEL_READ}
    """,
)

# The rollup's rows over the window as GPU_ROWS gives them, unfiltered, with what the
# findings read of each GPU-hour too (`measured`, `held`, `engine_busy`, the busy sums, the
# requests' deployment): on the overview, one read serves the fleet totals and the findings
# (`api.findings.hour_rows`). `busy` is the threshold test alone, as `findings.gpu_hours`
# applies it (GPU_ROWS takes every reported minute at idle_pct <= 0: its reader does that);
# `held`: at least held_mib of memory, or a process. One thread: the page's other queries
# run beside it on the store's second connection, and on a busy machine a parallel read of
# this one costs a quarter more CPU for no earlier answer.
GPU_HOUR_ROWS = Query(
    "fleet.gpu_hour_rows",
    f"""
    SELECT
        cluster, host, gpu_uuid, toUInt32(hour) AS hour_s,
        reported, measured, procs, inflight, engine_busy,
        {BUSY_BITS} AS busy,
        bitOr(procs, arraySum(arrayMap((k, v) -> bitShiftLeft(toUInt64(v >= {{held_mib:UInt32}}), k),
                                       low.1, low.3))) AS held,
        gpu_idx, gpu_model, gpu_deployment, request_deployment, gpm,
        util_total, util_count, util_peak, power_total_mw, power_count,
        mem_used_peak, mem_total_peak,
        busy_util_total, busy_util_count, busy_dram_total, busy_dram_count,
        busy_mem_util_total, busy_mem_util_count, inflight_s
    FROM findings_gpu_hour
    WHERE {_HOURS}
    SETTINGS output_format_arrow_low_cardinality_as_dictionary = 1, max_threads = 1
    """,
)

# Mean utilisation, power and memory per GPU and bucket of under an hour (short windows).
GPU_MINUTE_SERIES = Query(
    "fleet.gpu_minute_series",
    """
    SELECT
        cluster, host, gpu_uuid,
        toStartOfInterval(minute, toIntervalSecond({step_s:UInt32})) AS bucket,
        sum(if(sm_activity_n > 0, sm_activity_sum, toFloat64(util_gpu_sum)))
            / nullIf(sum(if(sm_activity_n > 0, sm_activity_n, util_gpu_n)), 0) AS util_mean_pct,
        sum(power_sum_mw) / nullIf(sum(power_n), 0) / 1000 AS power_mean_w,
        max(mem_used_max) AS mem_used_max_bytes,
        max(temperature_max_c) AS temperature_max_c
    FROM gpu_minute
    WHERE minute >= {start:DateTime64(3, 'UTC')} AND minute < {end:DateTime64(3, 'UTC')}
      AND ({cluster:String} = '' OR cluster = {cluster:String})
      AND ({gpu_uuid:String} = '' OR gpu_uuid = {gpu_uuid:String})
    GROUP BY cluster, host, gpu_uuid, bucket
    ORDER BY cluster, host, gpu_uuid, bucket
    """,
)

# Requests in flight on one GPU per bucket (mean concurrency = busy seconds / bucket).
GPU_INFLIGHT = Query(
    "fleet.gpu_inflight",
    """
    SELECT toStartOfInterval(minute, toIntervalSecond({step_s:UInt32})) AS bucket,
           sum(busy_s) / {step_s:UInt32} AS mean_in_flight, sum(requests) AS requests
    FROM inflight_minute
    WHERE minute >= {start:DateTime64(3, 'UTC')} AND minute < {end:DateTime64(3, 'UTC')}
      AND gpu_uuid = {gpu_uuid:String}
    GROUP BY bucket
    ORDER BY bucket
    """,
)
