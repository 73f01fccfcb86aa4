-- Per deployment per 5 minutes: the GPUs that reported and their summed utilisation, for
-- fleet sizing (docs/findings.md, "Mis-sized fleets"). gpu_minute holds the same figures
-- per GPU, but sizing needs them per deployment and bucket over windows of weeks, and
-- grouping 11 M GPU-minutes (30 days × 256 GPUs) by deployment takes seconds; this table
-- has 8,640 rows per deployment per 30 days.
-- util: SM activity where GPM reports it in a sample, else NVML utilisation (percent).
CREATE TABLE IF NOT EXISTS fleet_5m
(
    bucket          DateTime('UTC')                                   CODEC(DoubleDelta, ZSTD(1)),
    cluster         LowCardinality(String),
    deployment      LowCardinality(String),
    gpus            AggregateFunction(uniqExact, String),
    util_sum        SimpleAggregateFunction(sum, Float64),
    util_n          SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (cluster, deployment, bucket)
TTL bucket + INTERVAL {{rollup_ttl_days}} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS fleet_5m_mv TO fleet_5m AS
SELECT
    toStartOfFiveMinutes(time)                                          AS bucket,
    cluster, deployment,
    uniqExactState(toString(gpu_uuid))                                  AS gpus,
    sum(toFloat64(ifNull(sm_activity_pct, ifNull(util_gpu_pct, 0))))    AS util_sum,
    countIf(sm_activity_pct IS NOT NULL OR util_gpu_pct IS NOT NULL)    AS util_n
FROM gpu_samples
GROUP BY bucket, cluster, deployment;
