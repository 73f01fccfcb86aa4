-- Coarser rollups for the findings, so that a finding over weeks of a large fleet reads one
-- row per GPU-hour (30 days × 256 GPUs: 184 thousand rows) instead of one per GPU-minute
-- (11 million), and merges 30 quantile states per deployment instead of 43,200.
-- Materialized views on the minute rollups of 0002 fill them (a view also fires on the
-- rows another view writes, so every minute row reaches these). As in the minute rollups,
-- every column re-aggregates with its own function.
--
-- The findings read these for the whole hours of a window that lie after this migration
-- ran (`schema_migrations.applied_at`): rows inserted before then never passed through the
-- views. The ragged ends of short windows, and hours before this migration, come from the
-- minute rollups (api/findings/spans.py).
--
-- Column names differ from the minute rollups' where a view reads a column of the same
-- name: ClickHouse substitutes a SELECT alias wherever the name appears in that query.

-- Per GPU and hour. Minute-level facts are 64-bit masks, bit m for minute m of the hour,
-- merged by OR, so a minute split across unmerged rows counts once:
--   reported     any telemetry row
--   measured     a utilisation value (SM activity where NVML GPM gave it, else NVML util)
--   active       the minute's peak utilisation reached 20 %: busy at any idle threshold
--                the findings allow (their settings cap it at 20 %)
--   procs        a process held the GPU
--   inflight     a request was in flight (rows with gpu_uuid = '': on some GPU of the host)
--   engine_busy  (gpu_uuid = '') the engine's own busy clock advanced on the host
-- `low` keeps, for each minute below 20 %, its peak utilisation (%) and peak memory used
-- (MiB), so the idle and held thresholds are chosen at query time. A busy fleet has no
-- such minutes and the map stays empty.
-- Sums: util_* of the utilisation above over measured rows; busy_util_*, busy_dram_* (GPM
-- DRAM bandwidth, GPM rows) and busy_mem_util_* (NVML memory utilisation, one value per
-- row: its peak) over the active minutes only ("while busy" in docs/findings.md).
CREATE TABLE IF NOT EXISTS findings_gpu_hour
(
    hour                  DateTime('UTC')                                 CODEC(DoubleDelta, ZSTD(1)),
    cluster               LowCardinality(String),
    host                  LowCardinality(String),
    gpu_uuid              LowCardinality(String),
    gpu_model             SimpleAggregateFunction(max, LowCardinality(String)),
    gpu_deployment        SimpleAggregateFunction(max, LowCardinality(String)),
    reported              SimpleAggregateFunction(groupBitOr, UInt64),
    measured              SimpleAggregateFunction(groupBitOr, UInt64),
    active                SimpleAggregateFunction(groupBitOr, UInt64),
    procs                 SimpleAggregateFunction(groupBitOr, UInt64),
    low                   SimpleAggregateFunction(maxMap, Tuple(Array(UInt8), Array(UInt8), Array(UInt32))),
    util_total            SimpleAggregateFunction(sum, Float64),
    util_count            SimpleAggregateFunction(sum, UInt64),
    busy_util_total       SimpleAggregateFunction(sum, Float64),
    busy_util_count       SimpleAggregateFunction(sum, UInt64),
    busy_dram_total       SimpleAggregateFunction(sum, Float64),
    busy_dram_count       SimpleAggregateFunction(sum, UInt64),
    busy_mem_util_total   SimpleAggregateFunction(sum, Float64),
    busy_mem_util_count   SimpleAggregateFunction(sum, UInt64),
    gpm                   SimpleAggregateFunction(max, UInt8),
    mem_used_peak         SimpleAggregateFunction(max, Nullable(UInt64)),
    mem_total_peak        SimpleAggregateFunction(max, Nullable(UInt64)),
    inflight              SimpleAggregateFunction(groupBitOr, UInt64),
    inflight_s            SimpleAggregateFunction(sum, Float64),
    request_deployment    SimpleAggregateFunction(max, LowCardinality(String)),
    engine_busy           SimpleAggregateFunction(groupBitOr, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (cluster, host, gpu_uuid, hour)
TTL hour + INTERVAL {{rollup_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- A minute row's utilisation is `util_peak_` (aliases are shared by the whole SELECT), and
-- its sums follow the same choice: SM activity where the row has GPM samples.
CREATE MATERIALIZED VIEW IF NOT EXISTS findings_gpu_hour_mv TO findings_gpu_hour AS
SELECT
    toStartOfHour(minute)                                                   AS hour,
    cluster, host, gpu_uuid,
    max(gpu_name)                                                           AS gpu_model,
    max(deployment)                                                         AS gpu_deployment,
    groupBitOr(bitShiftLeft(toUInt64(1), toMinute(minute)) AS bit_)         AS reported,
    groupBitOrIf(bit_, (if(sm_activity_n > 0, sm_activity_max, util_gpu_max) AS util_peak_) IS NOT NULL)
                                                                            AS measured,
    groupBitOrIf(bit_, util_peak_ >= 20)                                    AS active,
    groupBitOrIf(bit_, procs_max > 0)                                       AS procs,
    maxMapIf([toUInt8(toMinute(minute))], [assumeNotNull(util_peak_)],
             [toUInt32(intDiv(ifNull(mem_used_max, 0), 1048576))], util_peak_ < 20) AS low,
    sumIf(if(sm_activity_n > 0, sm_activity_sum, toFloat64(util_gpu_sum)) AS util_s_, util_peak_ IS NOT NULL)
                                                                            AS util_total,
    sumIf(if(sm_activity_n > 0, sm_activity_n, util_gpu_n) AS util_n_, util_peak_ IS NOT NULL)
                                                                            AS util_count,
    sumIf(util_s_, util_peak_ >= 20)                                        AS busy_util_total,
    sumIf(util_n_, util_peak_ >= 20)                                        AS busy_util_count,
    sumIf(dram_bw_sum, util_peak_ >= 20 AND sm_activity_n > 0)              AS busy_dram_total,
    sumIf(sm_activity_n, util_peak_ >= 20)                                  AS busy_dram_count,
    sumIf(toFloat64(ifNull(util_mem_max, 0)), util_peak_ >= 20)             AS busy_mem_util_total,
    countIf(util_peak_ >= 20 AND util_mem_max IS NOT NULL)                  AS busy_mem_util_count,
    toUInt8(max(sm_activity_n) > 0)                                         AS gpm,
    max(mem_used_max)                                                       AS mem_used_peak,
    max(mem_total_max)                                                      AS mem_total_peak
FROM gpu_minute
GROUP BY hour, cluster, host, gpu_uuid;

CREATE MATERIALIZED VIEW IF NOT EXISTS findings_gpu_hour_inflight_mv TO findings_gpu_hour AS
SELECT
    toStartOfHour(minute)                                                   AS hour,
    cluster, host, gpu_uuid,
    groupBitOrIf(bitShiftLeft(toUInt64(1), toMinute(minute)), busy_s > 0)   AS inflight,
    sum(busy_s)                                                             AS inflight_s,
    max(deployment)                                                         AS request_deployment
FROM inflight_minute
GROUP BY hour, cluster, host, gpu_uuid;

-- The engine's busy clock (sglang:gpu_execution_seconds_total) marks a minute of its host
-- busy when it advanced within one minute row.
CREATE MATERIALIZED VIEW IF NOT EXISTS findings_gpu_hour_engine_mv TO findings_gpu_hour AS
SELECT
    toStartOfHour(minute)                                                   AS hour,
    cluster, host, '' AS gpu_uuid,
    groupBitOr(bitShiftLeft(toUInt64(1), toMinute(minute)))                 AS engine_busy
FROM engine_minute
WHERE metric = 'gpu_busy_seconds' AND value_max > value_min
GROUP BY hour, cluster, host;

-- Per deployment and 5 minutes, for fleet sizing and the arrival rate: the utilisation
-- sums of its GPUs (as in findings_gpu_hour), and its requests. How many GPUs reported in
-- a bucket comes from findings_gpu_hour's masks, which count each GPU once.
CREATE TABLE IF NOT EXISTS findings_fleet_5m
(
    bucket            DateTime('UTC')                                       CODEC(DoubleDelta, ZSTD(1)),
    cluster           LowCardinality(String),
    deployment        LowCardinality(String),
    util_total        SimpleAggregateFunction(sum, Float64),
    util_count        SimpleAggregateFunction(sum, UInt64),
    n_requests        SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (cluster, deployment, bucket)
TTL bucket + INTERVAL {{rollup_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS findings_fleet_5m_gpu_mv TO findings_fleet_5m AS
SELECT
    toStartOfFiveMinutes(minute)                                            AS bucket,
    cluster, deployment,
    sumIf(if(sm_activity_n > 0, sm_activity_sum, toFloat64(util_gpu_sum)),
          if(sm_activity_n > 0, sm_activity_max, util_gpu_max) IS NOT NULL) AS util_total,
    sumIf(if(sm_activity_n > 0, sm_activity_n, util_gpu_n),
          if(sm_activity_n > 0, sm_activity_max, util_gpu_max) IS NOT NULL) AS util_count
FROM gpu_minute
WHERE deployment != ''
GROUP BY bucket, cluster, deployment;

CREATE MATERIALIZED VIEW IF NOT EXISTS findings_fleet_5m_requests_mv TO findings_fleet_5m AS
SELECT
    toStartOfFiveMinutes(minute)                                            AS bucket,
    cluster, deployment,
    sum(requests)                                                           AS n_requests
FROM deployment_minute
GROUP BY bucket, cluster, deployment;

-- Per deployment, model and hour, then per day: deployment_minute's sums, quantile states
-- (those the findings use: TTFT, inter-token latency, queue) and histograms, merged. A quantile state holds a few hundred centroids whatever it
-- summarises, so a month is 30 day states to merge, not 43,200 minute states. Sorted by
-- time first: the findings read every deployment over a time range, and the hourly rows
-- they read are the few at the ends of a window (the states make rows of kilobytes).
CREATE TABLE IF NOT EXISTS findings_deployment_hour
(
    hour              DateTime('UTC')                                        CODEC(DoubleDelta, ZSTD(1)),
    cluster           LowCardinality(String),
    deployment        LowCardinality(String),
    model             LowCardinality(String),
    engine_framework  SimpleAggregateFunction(anyLast, LowCardinality(String)),
    n_requests        SimpleAggregateFunction(sum, UInt64),
    n_errors          SimpleAggregateFunction(sum, UInt64),
    prompt_tokens     SimpleAggregateFunction(sum, UInt64),
    cached_tokens     SimpleAggregateFunction(sum, UInt64),
    output_tokens     SimpleAggregateFunction(sum, UInt64),
    queue_s           SimpleAggregateFunction(sum, Float64),
    ttft_s            SimpleAggregateFunction(sum, Float64),
    prefill_s         SimpleAggregateFunction(sum, Float64),
    decode_s          SimpleAggregateFunction(sum, Float64),
    e2e_s             SimpleAggregateFunction(sum, Float64),
    n_phased          SimpleAggregateFunction(sum, UInt64),
    ttft_digest       AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    tpot_digest       AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    queue_digest      AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    shape             SimpleAggregateFunction(sumMap,
                          Tuple(Array(UInt16), Array(UInt64), Array(Float64), Array(Float64))),
    prompts           SimpleAggregateFunction(sumMap,
                          Tuple(Array(UInt16), Array(UInt64), Array(Float64), Array(UInt64)))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (cluster, hour, deployment, model)
TTL hour + INTERVAL {{rollup_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS findings_deployment_hour_mv TO findings_deployment_hour AS
SELECT
    toStartOfHour(minute)                                                   AS hour,
    cluster, deployment, model,
    anyLast(framework)                                                      AS engine_framework,
    sum(requests)                                                           AS n_requests,
    sum(errors)                                                             AS n_errors,
    sum(prompt_tokens_sum)                                                  AS prompt_tokens,
    sum(cached_tokens_sum)                                                  AS cached_tokens,
    sum(output_tokens_sum)                                                  AS output_tokens,
    sum(queue_sum)                                                          AS queue_s,
    sum(ttft_sum)                                                           AS ttft_s,
    sum(prefill_sum)                                                        AS prefill_s,
    sum(decode_sum)                                                         AS decode_s,
    sum(e2e_sum)                                                            AS e2e_s,
    sum(phased)                                                             AS n_phased,
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(ttft_q)                AS ttft_digest,
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(tpot_q)                AS tpot_digest,
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(queue_q)               AS queue_digest,
    sumMap(shape_hist)                                                      AS shape,
    sumMap(prompt_hist)                                                     AS prompts
FROM deployment_minute
GROUP BY hour, cluster, deployment, model;

CREATE TABLE IF NOT EXISTS findings_deployment_day
(
    day               DateTime('UTC')                                        CODEC(DoubleDelta, ZSTD(1)),
    cluster           LowCardinality(String),
    deployment        LowCardinality(String),
    model             LowCardinality(String),
    day_framework     SimpleAggregateFunction(anyLast, LowCardinality(String)),
    day_requests      SimpleAggregateFunction(sum, UInt64),
    day_errors        SimpleAggregateFunction(sum, UInt64),
    day_prompt_tokens SimpleAggregateFunction(sum, UInt64),
    day_cached_tokens SimpleAggregateFunction(sum, UInt64),
    day_output_tokens SimpleAggregateFunction(sum, UInt64),
    day_queue_s       SimpleAggregateFunction(sum, Float64),
    day_ttft_s        SimpleAggregateFunction(sum, Float64),
    day_prefill_s     SimpleAggregateFunction(sum, Float64),
    day_decode_s      SimpleAggregateFunction(sum, Float64),
    day_e2e_s         SimpleAggregateFunction(sum, Float64),
    day_phased        SimpleAggregateFunction(sum, UInt64),
    day_ttft          AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    day_tpot          AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    day_queue         AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    day_shape         SimpleAggregateFunction(sumMap,
                          Tuple(Array(UInt16), Array(UInt64), Array(Float64), Array(Float64))),
    day_prompts       SimpleAggregateFunction(sumMap,
                          Tuple(Array(UInt16), Array(UInt64), Array(Float64), Array(UInt64)))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (cluster, day, deployment, model)
TTL day + INTERVAL {{rollup_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS findings_deployment_day_mv TO findings_deployment_day AS
SELECT
    toStartOfDay(hour)                                                      AS day,
    cluster, deployment, model,
    anyLast(engine_framework)                                               AS day_framework,
    sum(n_requests)                                                         AS day_requests,
    sum(n_errors)                                                           AS day_errors,
    sum(prompt_tokens)                                                      AS day_prompt_tokens,
    sum(cached_tokens)                                                      AS day_cached_tokens,
    sum(output_tokens)                                                      AS day_output_tokens,
    sum(queue_s)                                                            AS day_queue_s,
    sum(ttft_s)                                                             AS day_ttft_s,
    sum(prefill_s)                                                          AS day_prefill_s,
    sum(decode_s)                                                           AS day_decode_s,
    sum(e2e_s)                                                              AS day_e2e_s,
    sum(n_phased)                                                           AS day_phased,
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(ttft_digest)           AS day_ttft,
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(tpot_digest)           AS day_tpot,
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(queue_digest)          AS day_queue,
    sumMap(shape)                                                           AS day_shape,
    sumMap(prompts)                                                         AS day_prompts
FROM findings_deployment_hour
GROUP BY day, cluster, deployment, model;

-- Engine gauges and counters per instance and hour (histogram buckets, le > 0, left out).
-- `minutes`: the minutes with a scrape (mask as above). A counter's increase needs its
-- first and last (minute, value) in the hour, its lowest value (below the first means it
-- was reset) and its highest. `kv_high`: the peak KV-cache usage of each minute at or
-- above 0.8, so the saturation threshold (0.8 or more) is chosen at query time.
CREATE TABLE IF NOT EXISTS findings_engine_hour
(
    hour          DateTime('UTC')                                               CODEC(DoubleDelta, ZSTD(1)),
    cluster       LowCardinality(String),
    deployment    LowCardinality(String),
    metric        LowCardinality(String),
    host          LowCardinality(String),
    instance      LowCardinality(String),
    minutes       SimpleAggregateFunction(groupBitOr, UInt64),
    total         SimpleAggregateFunction(sum, Float64),
    samples       SimpleAggregateFunction(sum, UInt64),
    lowest        SimpleAggregateFunction(min, Float64),
    highest       SimpleAggregateFunction(max, Float64),
    first         SimpleAggregateFunction(min, Tuple(DateTime('UTC'), Float64)),
    last          SimpleAggregateFunction(max, Tuple(DateTime('UTC'), Float64)),
    kv_high       SimpleAggregateFunction(maxMap, Tuple(Array(UInt8), Array(Float64)))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (cluster, deployment, metric, host, instance, hour)
TTL hour + INTERVAL {{rollup_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS findings_engine_hour_mv TO findings_engine_hour AS
SELECT
    toStartOfHour(minute)                                                   AS hour,
    cluster, deployment, metric, host, instance,
    groupBitOr(bitShiftLeft(toUInt64(1), toMinute(minute)))                 AS minutes,
    sum(value_sum)                                                          AS total,
    sum(n)                                                                  AS samples,
    min(value_min)                                                          AS lowest,
    max(value_max)                                                          AS highest,
    min((minute, value_min))                                                AS first,
    max((minute, value_max))                                                AS last,
    maxMapIf([toUInt8(toMinute(minute))], [value_max],
             metric = 'kv_cache_usage' AND value_max >= 0.8)                AS kv_high
FROM engine_minute
WHERE le = 0
GROUP BY hour, cluster, deployment, metric, host, instance;
