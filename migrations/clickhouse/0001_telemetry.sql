-- Raw telemetry: GPU samples, requests (one row per served request), engine metrics.
-- Codecs were chosen by measurement (bench/storage.py): percentages, NVML GPM fields
-- included, are whole percent in UInt8 with T64 (GPM reports doubles, but sensor noise is
-- far above 1 %); the energy counter is read only every few seconds, so its column is
-- mostly NULL, which defeats delta codecs — plain ZSTD does better.
-- Placeholders in double braces are filled by the migration runner from settings
-- (integers only); everything else is plain ClickHouse SQL.

CREATE TABLE IF NOT EXISTS gpu_samples
(
    time              DateTime64(3, 'UTC')    CODEC(DoubleDelta, ZSTD(1)),
    cluster           LowCardinality(String),
    host              LowCardinality(String),
    gpu_uuid          LowCardinality(String),
    gpu_index         UInt16                  CODEC(T64, ZSTD(1)),
    gpu_name          LowCardinality(String),
    deployment        LowCardinality(String),
    util_gpu_pct      Nullable(UInt8)         CODEC(T64, ZSTD(1)),
    util_mem_pct      Nullable(UInt8)         CODEC(T64, ZSTD(1)),
    mem_used_bytes    Nullable(UInt64)        CODEC(Delta, ZSTD(1)),
    mem_total_bytes   Nullable(UInt64)        CODEC(Delta, ZSTD(1)),
    power_mw          Nullable(UInt32)        CODEC(T64, ZSTD(1)),
    power_limit_mw    Nullable(UInt32)        CODEC(Delta, ZSTD(1)),
    energy_mj         Nullable(UInt64)        CODEC(ZSTD(3)),
    sm_clock_mhz      Nullable(UInt16)        CODEC(T64, ZSTD(1)),
    temperature_c     Nullable(UInt8)         CODEC(T64, ZSTD(1)),
    sm_activity_pct   Nullable(UInt8)         CODEC(T64, ZSTD(1)),
    sm_occupancy_pct  Nullable(UInt8)         CODEC(T64, ZSTD(1)),
    dram_bw_pct       Nullable(UInt8)         CODEC(T64, ZSTD(1)),
    tensor_active_pct Nullable(UInt8)         CODEC(T64, ZSTD(1)),
    proc_pids         Array(UInt32)           CODEC(ZSTD(1)),
    proc_mem_bytes    Array(UInt64)           CODEC(ZSTD(1)),
    proc_sm_pct       Array(UInt8)            CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (cluster, host, gpu_uuid, time)
TTL toDateTime(time) + INTERVAL {{raw_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS requests
(
    time              DateTime64(6, 'UTC')    CODEC(Delta, ZSTD(1)),
    end_time          DateTime64(6, 'UTC')    CODEC(Delta, ZSTD(1)),
    trace_id          String                  CODEC(ZSTD(1)),
    span_id           String                  CODEC(ZSTD(1)),
    request_id        String                  CODEC(ZSTD(1)),
    cluster           LowCardinality(String),
    host              LowCardinality(String),
    deployment        LowCardinality(String),
    model             LowCardinality(String),
    framework         LowCardinality(String),
    prompt_tokens     Nullable(UInt32)        CODEC(T64, ZSTD(1)),
    cached_tokens     Nullable(UInt32)        CODEC(T64, ZSTD(1)),
    output_tokens     Nullable(UInt32)        CODEC(T64, ZSTD(1)),
    n                 Nullable(UInt16)        CODEC(T64, ZSTD(1)),
    max_tokens        Nullable(UInt32)        CODEC(T64, ZSTD(1)),
    temperature       Nullable(Float32)       CODEC(ZSTD(1)),
    queue_s           Nullable(Float64)       CODEC(Gorilla, ZSTD(1)),
    ttft_s            Nullable(Float64)       CODEC(Gorilla, ZSTD(1)),
    prefill_s         Nullable(Float64)       CODEC(Gorilla, ZSTD(1)),
    decode_s          Nullable(Float64)       CODEC(Gorilla, ZSTD(1)),
    e2e_s             Float64                 CODEC(Gorilla, ZSTD(1)),
    finish_reason     LowCardinality(String),
    error             String                  CODEC(ZSTD(1)),
    gpu_uuids         Array(LowCardinality(String))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (cluster, deployment, time, span_id)
TTL toDateTime(time) + INTERVAL {{raw_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Engine state scraped from /metrics, one value per row under a canonical name
-- (docs/telemetry.md lists them). Histogram buckets keep their upper bound in `le`;
-- every other series has le = 0.
CREATE TABLE IF NOT EXISTS engine_metrics
(
    time              DateTime64(3, 'UTC')    CODEC(DoubleDelta, ZSTD(1)),
    cluster           LowCardinality(String),
    host              LowCardinality(String),
    deployment        LowCardinality(String),
    instance          LowCardinality(String),
    engine            LowCardinality(String),
    metric            LowCardinality(String),
    le                Float64                 CODEC(ZSTD(1)),
    labels            Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    value             Float64                 CODEC(Gorilla, ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (cluster, deployment, metric, host, instance, le, time)
TTL toDateTime(time) + INTERVAL {{raw_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;
