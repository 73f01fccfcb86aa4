-- Hourly rollups for long windows: a week of 256 GPUs is 2.6 million GPU-minutes but only
-- 43 thousand GPU-hours. Filled by materialized views on the minute rollups (views cascade:
-- rows written to gpu_minute by its own view feed these too). Like the minute rollups,
-- every column re-aggregates with its own function.
--
-- Minute-level facts are 64-bit masks, bit k for minute k of the hour, merged by OR, so a
-- minute split across rows not merged yet still counts once: `reported` (a sample came),
-- `inflight_mask` (a request was in flight; rows with gpu_uuid = '' mean some GPU of the
-- host), and `ge_NN` (some sample of the minute had utilisation ≥ NN %: SM activity where
-- NVML GPM gives it, else the kernel-running %). The idle threshold is chosen at query
-- time from the ladder 1..20 % (a minute is below N % when its ge_N bit is clear); per-minute
-- values would merge ~5× slower (maxForEach), and thresholds past 20 % do not mean idle.

CREATE TABLE IF NOT EXISTS gpu_hour
(
    hour                DateTime('UTC')                                   CODEC(DoubleDelta, ZSTD(1)),
    cluster             LowCardinality(String),
    host                LowCardinality(String),
    gpu_uuid            LowCardinality(String),
    gpu_index           SimpleAggregateFunction(max, UInt16),
    gpu_name            SimpleAggregateFunction(max, LowCardinality(String)),
    deployment          SimpleAggregateFunction(max, LowCardinality(String)),
    reported            SimpleAggregateFunction(groupBitOr, UInt64),
    procs_mask          SimpleAggregateFunction(groupBitOr, UInt64),
    inflight_mask       SimpleAggregateFunction(groupBitOr, UInt64),
    ge_01               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_02               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_03               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_04               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_05               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_06               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_07               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_08               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_09               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_10               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_11               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_12               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_13               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_14               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_15               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_16               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_17               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_18               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_19               SimpleAggregateFunction(groupBitOr, UInt64),
    ge_20               SimpleAggregateFunction(groupBitOr, UInt64),
    util_max            SimpleAggregateFunction(max, Float32),
    util_sum            SimpleAggregateFunction(sum, Float64),
    util_n              SimpleAggregateFunction(sum, UInt64),
    mem_used_max        SimpleAggregateFunction(max, Nullable(UInt64)),
    mem_total_max       SimpleAggregateFunction(max, Nullable(UInt64)),
    power_sum_mw        SimpleAggregateFunction(sum, UInt64),
    power_n             SimpleAggregateFunction(sum, UInt64),
    temperature_max_c   SimpleAggregateFunction(max, Nullable(UInt8)),
    inflight_s          SimpleAggregateFunction(sum, Float64),
    requests            SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (cluster, host, gpu_uuid, hour)
TTL hour + INTERVAL {{rollup_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Aliases end in `_` where a name would shadow a source column (ClickHouse substitutes a
-- SELECT alias wherever the name appears in the query).
CREATE MATERIALIZED VIEW IF NOT EXISTS gpu_hour_mv TO gpu_hour AS
SELECT
    toStartOfHour(minute) AS hour,
    cluster, host, gpu_uuid,
    max(gpu_index) AS gpu_index,
    max(gpu_name) AS gpu_name,
    max(deployment) AS deployment,
    groupBitOr(bitShiftLeft(toUInt64(1), toMinute(minute)) AS bit_) AS reported,
    groupBitOrIf(bit_, procs_max > 0) AS procs_mask,
    toUInt64(0) AS inflight_mask,
    groupBitOrIf(bit_, util_peak_ >= 1) AS ge_01,
    groupBitOrIf(bit_, util_peak_ >= 2) AS ge_02,
    groupBitOrIf(bit_, util_peak_ >= 3) AS ge_03,
    groupBitOrIf(bit_, util_peak_ >= 4) AS ge_04,
    groupBitOrIf(bit_, util_peak_ >= 5) AS ge_05,
    groupBitOrIf(bit_, util_peak_ >= 6) AS ge_06,
    groupBitOrIf(bit_, util_peak_ >= 7) AS ge_07,
    groupBitOrIf(bit_, util_peak_ >= 8) AS ge_08,
    groupBitOrIf(bit_, util_peak_ >= 9) AS ge_09,
    groupBitOrIf(bit_, util_peak_ >= 10) AS ge_10,
    groupBitOrIf(bit_, util_peak_ >= 11) AS ge_11,
    groupBitOrIf(bit_, util_peak_ >= 12) AS ge_12,
    groupBitOrIf(bit_, util_peak_ >= 13) AS ge_13,
    groupBitOrIf(bit_, util_peak_ >= 14) AS ge_14,
    groupBitOrIf(bit_, util_peak_ >= 15) AS ge_15,
    groupBitOrIf(bit_, util_peak_ >= 16) AS ge_16,
    groupBitOrIf(bit_, util_peak_ >= 17) AS ge_17,
    groupBitOrIf(bit_, util_peak_ >= 18) AS ge_18,
    groupBitOrIf(bit_, util_peak_ >= 19) AS ge_19,
    groupBitOrIf(bit_, util_peak_ >= 20) AS ge_20,
    max(toFloat32(if(sm_activity_n > 0, ifNull(sm_activity_max, 0), ifNull(util_gpu_max, 0)) AS util_peak_))
        AS util_max,
    sum(if(sm_activity_n > 0, sm_activity_sum, toFloat64(util_gpu_sum))) AS util_sum,
    sum(if(sm_activity_n > 0, sm_activity_n, util_gpu_n)) AS util_n,
    max(mem_used_max) AS mem_used_max,
    max(mem_total_max) AS mem_total_max,
    sum(power_sum_mw) AS power_sum_mw,
    sum(power_n) AS power_n,
    max(temperature_max_c) AS temperature_max_c,
    toFloat64(0) AS inflight_s,
    toUInt64(0) AS requests
FROM gpu_minute
GROUP BY hour, cluster, host, gpu_uuid;

-- Requests in flight, per GPU (or per host under gpu_uuid = '' when spans named no GPU).
-- Name and deployment stay '' here: they merge by max, so the GPU's own rows win.
CREATE MATERIALIZED VIEW IF NOT EXISTS gpu_hour_inflight_mv TO gpu_hour AS
SELECT
    toStartOfHour(minute) AS hour,
    cluster, host, gpu_uuid,
    toUInt16(0) AS gpu_index,
    '' AS gpu_name,
    '' AS deployment,
    toUInt64(0) AS reported,
    toUInt64(0) AS procs_mask,
    groupBitOrIf(bitShiftLeft(toUInt64(1), toMinute(minute)), busy_s > 0) AS inflight_mask,
    toUInt64(0) AS ge_01,
    toUInt64(0) AS ge_02,
    toUInt64(0) AS ge_03,
    toUInt64(0) AS ge_04,
    toUInt64(0) AS ge_05,
    toUInt64(0) AS ge_06,
    toUInt64(0) AS ge_07,
    toUInt64(0) AS ge_08,
    toUInt64(0) AS ge_09,
    toUInt64(0) AS ge_10,
    toUInt64(0) AS ge_11,
    toUInt64(0) AS ge_12,
    toUInt64(0) AS ge_13,
    toUInt64(0) AS ge_14,
    toUInt64(0) AS ge_15,
    toUInt64(0) AS ge_16,
    toUInt64(0) AS ge_17,
    toUInt64(0) AS ge_18,
    toUInt64(0) AS ge_19,
    toUInt64(0) AS ge_20,
    toFloat32(0) AS util_max,
    toFloat64(0) AS util_sum, toUInt64(0) AS util_n,
    CAST(NULL, 'Nullable(UInt64)') AS mem_used_max, CAST(NULL, 'Nullable(UInt64)') AS mem_total_max,
    toUInt64(0) AS power_sum_mw, toUInt64(0) AS power_n,
    CAST(NULL, 'Nullable(UInt8)') AS temperature_max_c,
    sum(busy_s) AS inflight_s,
    sum(requests) AS requests
FROM inflight_minute
GROUP BY hour, cluster, host, gpu_uuid;

CREATE TABLE IF NOT EXISTS deployment_hour
(
    hour            DateTime('UTC')                                        CODEC(DoubleDelta, ZSTD(1)),
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
    hosts           AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (cluster, deployment, model, hour)
TTL hour + INTERVAL {{rollup_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS deployment_hour_mv TO deployment_hour AS
SELECT
    toStartOfHour(minute) AS hour,
    cluster, deployment, model,
    anyLast(framework) AS framework,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sum(prompt_tokens_sum) AS prompt_tokens_sum,
    sum(cached_tokens_sum) AS cached_tokens_sum,
    sum(output_tokens_sum) AS output_tokens_sum,
    sum(queue_sum) AS queue_sum,
    sum(ttft_sum) AS ttft_sum,
    sum(prefill_sum) AS prefill_sum,
    sum(decode_sum) AS decode_sum,
    sum(e2e_sum) AS e2e_sum,
    sum(phased) AS phased,
    max(e2e_max) AS e2e_max,
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(ttft_q) AS ttft_q,
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(tpot_q) AS tpot_q,
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(e2e_q) AS e2e_q,
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(queue_q) AS queue_q,
    uniqMergeState(hosts) AS hosts
FROM deployment_minute
GROUP BY hour, cluster, deployment, model;

-- Engine gauges per instance and hour: sum and count of the per-minute values, so the
-- mean of an instance over any run of hours is value_sum / n.
CREATE TABLE IF NOT EXISTS engine_hour
(
    hour            DateTime('UTC')                           CODEC(DoubleDelta, ZSTD(1)),
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
PARTITION BY toYYYYMM(hour)
ORDER BY (cluster, deployment, metric, host, instance, le, hour)
TTL hour + INTERVAL {{rollup_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS engine_hour_mv TO engine_hour AS
SELECT
    toStartOfHour(minute) AS hour,
    cluster, deployment, host, instance, metric, le,
    anyLast(engine) AS engine,
    min(value_min) AS value_min,
    max(value_max) AS value_max,
    sum(value_sum) AS value_sum,
    sum(n) AS n
FROM engine_minute
GROUP BY hour, cluster, deployment, host, instance, metric, le;
