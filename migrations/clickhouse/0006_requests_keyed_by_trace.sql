-- Requests are identified by trace id and span id together. 0001 sorted (and so, as a
-- ReplacingMergeTree, deduplicated) requests by (cluster, deployment, time, span_id): two
-- spans of different traces that share a span id and a start time collapsed into one row
-- after a merge, although both had been acknowledged. Span ids are random 8-byte values, so
-- this is rare in real traffic, but a sender that reuses span ids across traces (or a
-- fuzzer) lost requests. trace_id joins the end of the sorting key, so the primary index
-- and every range read stay as they were.
--
-- ClickHouse cannot change a sorting key to include an existing column, so the table is
-- rebuilt: its rows are copied aside, the table is dropped and created with the new key,
-- and the rows copied back. The two views that read requests stop first and start again
-- after the copy (unchanged from 0002), so the copy adds nothing to the rollups, which
-- already hold every copied row. Migrations run when the server starts, before it takes
-- telemetry; a batch that a second server inserts during the copy would be missed by the
-- rollups, or by the table if it lands between the first copy and the drop. The copy runs
-- at ClickHouse's INSERT … SELECT speed (about a million rows a second per core).

CREATE TABLE IF NOT EXISTS requests_rekey
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
ORDER BY (cluster, deployment, time, span_id, trace_id)
TTL toDateTime(time) + INTERVAL {{raw_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

DROP VIEW IF EXISTS deployment_minute_mv;
DROP VIEW IF EXISTS inflight_minute_mv;

INSERT INTO requests_rekey (
    time, end_time, trace_id, span_id, request_id, cluster, host, deployment, model, framework,
    prompt_tokens, cached_tokens, output_tokens, n, max_tokens, temperature,
    queue_s, ttft_s, prefill_s, decode_s, e2e_s, finish_reason, error, gpu_uuids)
SELECT
    time, end_time, trace_id, span_id, request_id, cluster, host, deployment, model, framework,
    prompt_tokens, cached_tokens, output_tokens, n, max_tokens, temperature,
    queue_s, ttft_s, prefill_s, decode_s, e2e_s, finish_reason, error, gpu_uuids
FROM requests;

DROP TABLE IF EXISTS requests;

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
ORDER BY (cluster, deployment, time, span_id, trace_id)
TTL toDateTime(time) + INTERVAL {{raw_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO requests (
    time, end_time, trace_id, span_id, request_id, cluster, host, deployment, model, framework,
    prompt_tokens, cached_tokens, output_tokens, n, max_tokens, temperature,
    queue_s, ttft_s, prefill_s, decode_s, e2e_s, finish_reason, error, gpu_uuids)
SELECT
    time, end_time, trace_id, span_id, request_id, cluster, host, deployment, model, framework,
    prompt_tokens, cached_tokens, output_tokens, n, max_tokens, temperature,
    queue_s, ttft_s, prefill_s, decode_s, e2e_s, finish_reason, error, gpu_uuids
FROM requests_rekey;

DROP TABLE IF EXISTS requests_rekey;

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
