-- Minute rollups, filled by materialized views as rows arrive. Dashboards and findings
-- read these, never raw rows, for windows longer than a few hours. Every column is a
-- SimpleAggregateFunction or an aggregate state, so reading them re-aggregates with the
-- same function (sum of sums, max of maxes). Each keeps a deduplication window like the
-- raw tables: a retried insert (same token) must not feed the views twice.

CREATE TABLE IF NOT EXISTS gpu_minute
(
    minute              DateTime('UTC')                                   CODEC(DoubleDelta, ZSTD(1)),
    cluster             LowCardinality(String),
    host                LowCardinality(String),
    gpu_uuid            LowCardinality(String),
    gpu_index           SimpleAggregateFunction(max, UInt16),
    gpu_name            SimpleAggregateFunction(anyLast, LowCardinality(String)),
    deployment          SimpleAggregateFunction(anyLast, LowCardinality(String)),
    samples             SimpleAggregateFunction(sum, UInt64),
    util_gpu_max        SimpleAggregateFunction(max, Nullable(UInt8)),
    util_gpu_sum        SimpleAggregateFunction(sum, UInt64),
    util_gpu_n          SimpleAggregateFunction(sum, UInt64),
    util_mem_max        SimpleAggregateFunction(max, Nullable(UInt8)),
    sm_activity_max     SimpleAggregateFunction(max, Nullable(UInt8)),
    sm_activity_sum     SimpleAggregateFunction(sum, Float64),
    sm_activity_n       SimpleAggregateFunction(sum, UInt64),
    dram_bw_max         SimpleAggregateFunction(max, Nullable(UInt8)),
    dram_bw_sum         SimpleAggregateFunction(sum, Float64),
    tensor_active_max   SimpleAggregateFunction(max, Nullable(UInt8)),
    mem_used_max        SimpleAggregateFunction(max, Nullable(UInt64)),
    mem_used_min        SimpleAggregateFunction(min, Nullable(UInt64)),
    mem_total_max       SimpleAggregateFunction(max, Nullable(UInt64)),
    power_sum_mw        SimpleAggregateFunction(sum, UInt64),
    power_n             SimpleAggregateFunction(sum, UInt64),
    power_max_mw        SimpleAggregateFunction(max, Nullable(UInt32)),
    power_limit_mw      SimpleAggregateFunction(max, Nullable(UInt32)),
    energy_min_mj       SimpleAggregateFunction(min, Nullable(UInt64)),
    energy_max_mj       SimpleAggregateFunction(max, Nullable(UInt64)),
    temperature_max_c   SimpleAggregateFunction(max, Nullable(UInt8)),
    procs_max           SimpleAggregateFunction(max, UInt16)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (cluster, host, gpu_uuid, minute)
TTL minute + INTERVAL {{rollup_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS gpu_minute_mv TO gpu_minute AS
SELECT
    toStartOfMinute(time)                          AS minute,
    cluster, host, gpu_uuid,
    max(gpu_index)                                 AS gpu_index,
    anyLast(gpu_name)                              AS gpu_name,
    anyLast(deployment)                            AS deployment,
    count()                                        AS samples,
    max(util_gpu_pct)                              AS util_gpu_max,
    sum(toUInt64(assumeNotNull(util_gpu_pct)))     AS util_gpu_sum,
    countIf(util_gpu_pct IS NOT NULL)              AS util_gpu_n,
    max(util_mem_pct)                              AS util_mem_max,
    max(sm_activity_pct)                           AS sm_activity_max,
    sum(toFloat64(ifNull(sm_activity_pct, 0)))     AS sm_activity_sum,
    countIf(sm_activity_pct IS NOT NULL)           AS sm_activity_n,
    max(dram_bw_pct)                               AS dram_bw_max,
    sum(toFloat64(ifNull(dram_bw_pct, 0)))         AS dram_bw_sum,
    max(tensor_active_pct)                         AS tensor_active_max,
    max(mem_used_bytes)                            AS mem_used_max,
    min(mem_used_bytes)                            AS mem_used_min,
    max(mem_total_bytes)                           AS mem_total_max,
    sum(toUInt64(ifNull(power_mw, 0)))             AS power_sum_mw,
    countIf(power_mw IS NOT NULL)                  AS power_n,
    max(power_mw)                                  AS power_max_mw,
    max(power_limit_mw)                            AS power_limit_mw,
    min(energy_mj)                                 AS energy_min_mj,
    max(energy_mj)                                 AS energy_max_mj,
    max(temperature_c)                             AS temperature_max_c,
    toUInt16(max(length(proc_pids)))               AS procs_max
FROM gpu_samples
GROUP BY minute, cluster, host, gpu_uuid;

-- Per deployment and model, per minute. The two histograms (sumMap keyed by bucket)
-- let findings apply thresholds chosen at query time without reading raw requests:
--   shape_hist key  = decode-share decile (0..10) * 16 + output-token bucket (0..11)
--   prompt_hist key = prompt-token bucket (0..20)
-- Token buckets are floor(log2(tokens + 1)), so bucket b holds [2^b - 1, 2^(b+1) - 1).
CREATE TABLE IF NOT EXISTS deployment_minute
(
    minute          DateTime('UTC')                                        CODEC(DoubleDelta, ZSTD(1)),
    cluster         LowCardinality(String),
    deployment      LowCardinality(String),
    model           LowCardinality(String),
    framework       SimpleAggregateFunction(anyLast, LowCardinality(String)),
    requests        SimpleAggregateFunction(sum, UInt64),
    errors          SimpleAggregateFunction(sum, UInt64),
    prompt_tokens_sum SimpleAggregateFunction(sum, UInt64),
    cached_tokens_sum SimpleAggregateFunction(sum, UInt64),
    output_tokens_sum SimpleAggregateFunction(sum, UInt64),
    queue_sum       SimpleAggregateFunction(sum, Float64),
    ttft_sum        SimpleAggregateFunction(sum, Float64),
    prefill_sum     SimpleAggregateFunction(sum, Float64),
    decode_sum      SimpleAggregateFunction(sum, Float64),
    e2e_sum         SimpleAggregateFunction(sum, Float64),
    phased          SimpleAggregateFunction(sum, UInt64),
    e2e_max         SimpleAggregateFunction(max, Float64),
    ttft_q          AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    tpot_q          AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    e2e_q           AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    queue_q         AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    hosts           AggregateFunction(uniq, String),
    shape_hist      SimpleAggregateFunction(sumMap, Tuple(Array(UInt16), Array(UInt64), Array(Float64), Array(Float64))),
    prompt_hist     SimpleAggregateFunction(sumMap, Tuple(Array(UInt16), Array(UInt64), Array(Float64), Array(UInt64)))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (cluster, deployment, model, minute)
TTL minute + INTERVAL {{rollup_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS deployment_minute_mv TO deployment_minute AS
SELECT
    toStartOfMinute(time)                                   AS minute,
    cluster, deployment, model,
    anyLast(framework)                                      AS framework,
    count()                                                 AS requests,
    countIf(error != '')                                    AS errors,
    sum(toUInt64(ifNull(prompt_tokens, 0)))                 AS prompt_tokens_sum,
    sum(toUInt64(ifNull(cached_tokens, 0)))                 AS cached_tokens_sum,
    sum(toUInt64(ifNull(output_tokens, 0)))                 AS output_tokens_sum,
    sum(ifNull(queue_s, 0))                                 AS queue_sum,
    sum(ifNull(ttft_s, 0))                                  AS ttft_sum,
    sum(ifNull(prefill_s, 0))                               AS prefill_sum,
    sum(ifNull(decode_s, 0))                                AS decode_sum,
    sum(e2e_s)                                              AS e2e_sum,
    countIf(prefill_s IS NOT NULL AND decode_s IS NOT NULL) AS phased,
    max(e2e_s)                                              AS e2e_max,
    quantilesTDigestStateIf(0.5, 0.9, 0.95, 0.99)(assumeNotNull(ttft_s), ttft_s IS NOT NULL) AS ttft_q,
    quantilesTDigestStateIf(0.5, 0.9, 0.95, 0.99)(
        assumeNotNull(decode_s) / (assumeNotNull(output_tokens) - 1),
        decode_s IS NOT NULL AND output_tokens > 1)         AS tpot_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(e2e_s)      AS e2e_q,
    quantilesTDigestStateIf(0.5, 0.9, 0.95, 0.99)(assumeNotNull(queue_s), queue_s IS NOT NULL) AS queue_q,
    uniqState(toString(host))                               AS hosts,
    sumMap(
        [toUInt16(if(decode_s IS NULL OR e2e_s <= 0, 0,
                     least(10, intDiv(toUInt64(floor(assumeNotNull(decode_s) / e2e_s * 100)), 10))) * 16
                  + least(11, toUInt16(floor(log2(toFloat64(ifNull(output_tokens, 0)) + 1)))))],
        [toUInt64(1)], [e2e_s], [ifNull(decode_s, 0)])       AS shape_hist,
    sumMap(
        [least(toUInt16(20), toUInt16(floor(log2(toFloat64(ifNull(prompt_tokens, 0)) + 1))))],
        [toUInt64(1)], [ifNull(ttft_s, 0)], [toUInt64(ifNull(cached_tokens, 0))]) AS prompt_hist
FROM requests
GROUP BY minute, cluster, deployment, model;

-- Seconds of request time in flight per GPU per minute (for the idle finding: a minute
-- with a request in flight is never idle). A request with no GPU list is counted under
-- gpu_uuid = '' for its host, meaning "some GPU of this host".
CREATE TABLE IF NOT EXISTS inflight_minute
(
    minute          DateTime('UTC')                           CODEC(DoubleDelta, ZSTD(1)),
    cluster         LowCardinality(String),
    host            LowCardinality(String),
    gpu_uuid        LowCardinality(String),
    deployment      SimpleAggregateFunction(anyLast, LowCardinality(String)),
    busy_s          SimpleAggregateFunction(sum, Float64),
    requests        SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (cluster, host, gpu_uuid, minute)
TTL minute + INTERVAL {{rollup_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS inflight_minute_mv TO inflight_minute AS
SELECT
    toDateTime(m, 'UTC')                                     AS minute,
    cluster, host, gpu                                       AS gpu_uuid,
    anyLast(deployment)                                      AS deployment,
    sum(greatest(0., least(toFloat64(end_time), toFloat64(m) + 60) - greatest(toFloat64(time), toFloat64(m)))) AS busy_s,
    countIf(toFloat64(time) >= toFloat64(m))                          AS requests
FROM requests
ARRAY JOIN if(empty(gpu_uuids), [''], gpu_uuids) AS gpu
ARRAY JOIN range(toUInt32(toStartOfMinute(time)),
                 toUInt32(least(toFloat64(end_time), toFloat64(time) + 86400)) + 1, 60) AS m
GROUP BY minute, cluster, host, gpu_uuid;

CREATE TABLE IF NOT EXISTS engine_minute
(
    minute          DateTime('UTC')                           CODEC(DoubleDelta, ZSTD(1)),
    cluster         LowCardinality(String),
    deployment      LowCardinality(String),
    host            LowCardinality(String),
    instance        LowCardinality(String),
    metric          LowCardinality(String),
    le              Float64,
    engine          SimpleAggregateFunction(anyLast, LowCardinality(String)),
    value_min       SimpleAggregateFunction(min, Float64),
    value_max       SimpleAggregateFunction(max, Float64),
    value_sum       SimpleAggregateFunction(sum, Float64),
    n               SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (cluster, deployment, metric, host, instance, le, minute)
TTL minute + INTERVAL {{rollup_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS engine_minute_mv TO engine_minute AS
SELECT
    toStartOfMinute(time) AS minute,
    cluster, deployment, host, instance, metric, le,
    anyLast(engine)       AS engine,
    min(value)            AS value_min,
    max(value)            AS value_max,
    sum(value)            AS value_sum,
    count()               AS n
FROM engine_metrics
GROUP BY minute, cluster, deployment, host, instance, metric, le;
