"""Fleet queries: every GPU over a window, from the hourly rollup `gpu_hour` (one row per
GPU-hour, with each minute's busiest utilisation and in-flight bit kept), and
from `gpu_minute` only for the fine-grained series of windows of a day or less.

A GPU-minute is idle when its busiest utilisation is below the idle threshold (read from a
ladder of whole percents, 1–20) and no
request was in flight on that GPU (or, for spans that named no GPU, on its host). Minutes
are bits of a per-hour mask, so rows of one minute that were not merged yet still count
once, and the window is cut at the minute, not the hour. "Utilisation" is SM activity where NVML GPM
reports it (Hopper and newer), else NVML's kernel-running percentage (docs/findings.md).
"""

from api.store.gateway import Query

_HOURS = """
    hour >= toStartOfHour({start:DateTime64(3, 'UTC')}) AND hour < {end:DateTime64(3, 'UTC')}
"""


def in_window_mask(hour: str) -> str:
    """SQL for the bits of the minutes of `hour` inside [t0, t1) (both defined in a WITH)."""
    h0 = f"toInt64(toUInt32({hour}))"
    first = f"toUInt8(least(60, greatest(0, intDiv(t0 - {h0} + 59, 60))))"
    end = f"toUInt8(least(60, greatest(0, intDiv(t1 - {h0} + 59, 60))))"
    return f"bitAnd(bitShiftLeft(toUInt64(-1), {first}), bitShiftLeft(toUInt64(1), {end}) - 1)"


WINDOW_BOUNDS = """
        toInt64(toUInt32(toDateTime({start:DateTime64(3, 'UTC')}))) AS t0,
        toInt64(toUInt32(toDateTime({end:DateTime64(3, 'UTC')}))) AS t1"""

# Bit k set where some sample of minute k reached the idle threshold: the ladder column
# ge_N for N = the threshold rounded up, 1..20 % (migrations/clickhouse/0004).
_BUSY_LADDER = "[" + ", ".join(f"groupBitOr(ge_{n:02d})" for n in range(1, 21)) + "]"

# One row per GPU and hour: the caller builds per-GPU totals, the hour-of-day heat map and
# the hourly utilisation series from these rows without another scan. Minutes are bits;
# the window mask cuts the first and last hour at the minute.
GPU_HOURS = Query(
    "fleet.gpu_hours",
    f"""
    WITH{WINDOW_BOUNDS},
        toUInt8(least(20, greatest(1, ceil({{idle_pct:Float64}})))) AS level
    SELECT
        g.cluster AS cluster, g.host AS host, g.gpu_uuid AS gpu_uuid, g.hour AS hour,
        g.gpu_index AS gpu_index, g.gpu_name AS gpu_name, g.deployment AS deployment,
        {in_window_mask("g.hour")} AS in_window,
        bitAnd(g.reported, in_window) AS seen,
        bitCount(seen) AS minutes,
        bitAnd(seen, bitNot(bitOr(if({{idle_pct:Float64}} <= 0, g.reported, g.busy[level]),
                                  bitOr(g.inflight, h.inflight)))) AS idle_bits,
        bitCount(idle_bits) AS idle_minutes,
        bitCount(bitAnd(idle_bits, g.procs)) AS idle_held_minutes,
        g.util_sum AS util_sum, g.util_n AS util_n, g.util_max AS util_max_pct,
        g.power_sum_mw AS power_sum_mw, g.power_n AS power_n,
        g.mem_used_max AS mem_used_max_bytes,
        g.mem_total_max AS mem_total_bytes,
        g.temperature_max_c AS temperature_max_c,
        g.busy_s AS busy_s,
        g.requests AS requests
    FROM (
        SELECT
            cluster, host, gpu_uuid, hour,
            max(gpu_index) AS gpu_index, max(gpu_name) AS gpu_name, max(deployment) AS deployment,
            groupBitOr(reported) AS reported, groupBitOr(procs_mask) AS procs,
            groupBitOr(inflight_mask) AS inflight, {_BUSY_LADDER} AS busy,
            max(util_max) AS util_max, sum(util_sum) AS util_sum, sum(util_n) AS util_n,
            sum(power_sum_mw) AS power_sum_mw, sum(power_n) AS power_n,
            max(mem_used_max) AS mem_used_max, max(mem_total_max) AS mem_total_max,
            max(temperature_max_c) AS temperature_max_c,
            sum(inflight_s) AS busy_s, sum(requests) AS requests
        FROM gpu_hour
        WHERE {_HOURS}
          AND gpu_uuid != ''
          AND ({{cluster:String}} = '' OR cluster = {{cluster:String}})
          AND ({{gpu_uuid:String}} = '' OR gpu_uuid = {{gpu_uuid:String}})
        GROUP BY cluster, host, gpu_uuid, hour
        HAVING {{deployment:String}} = '' OR deployment = {{deployment:String}}
    ) AS g
    LEFT JOIN (
        SELECT cluster, host, hour, groupBitOr(inflight_mask) AS inflight
        FROM gpu_hour
        WHERE {_HOURS} AND gpu_uuid = ''
        GROUP BY cluster, host, hour
    ) AS h ON h.cluster = g.cluster AND h.host = g.host AND h.hour = g.hour
    WHERE minutes > 0
    ORDER BY cluster, host, gpu_uuid, hour
    SETTINGS join_use_nulls = 0
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
