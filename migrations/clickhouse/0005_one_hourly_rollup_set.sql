-- One set of hourly rollups. 0003 (findings_*) and 0004 (gpu_hour, deployment_hour,
-- engine_hour) kept near-duplicate tables, each filled by its own materialized views, so
-- every GPU sample and request fed both. The findings' set stays: its per-minute
-- utilisation map answers any idle threshold, and it has the daily table. It gains the
-- columns only the dashboards read, and the dashboards' tables and views go:
--   findings_gpu_hour         + gpu_idx, util_peak, power_total_mw, power_count,
--                               temperature_peak_c, requests_started
--   findings_deployment_hour  + e2e_digest, host_set    (and findings_deployment_day the same
--                               as day_e2e, day_hosts)
--   findings_engine_hour      already holds what engine_hour gave the dashboards (le = 0).
-- The dashboards' idle ladder (ge_01 … ge_20) is `active` OR the minutes of `low` at or
-- above the threshold, exactly.
--
-- What only the dropped tables held (power, temperature, GPU index, peak utilisation and
-- requests per GPU-hour; end-to-end latency states and hosts per deployment-hour) is copied
-- into the kept tables before they are dropped, with every other column at its neutral
-- value (0, '', an empty state), so merged rows are exactly what the new views would have
-- written. The backfill into findings_deployment_hour reaches findings_deployment_day
-- through its view. Statements run in this order so that no row is counted twice: the old
-- views stop first, the new views start, then the copy reads the old tables. Migrations run
-- when the server starts, before it takes telemetry; a batch that a second server inserts
-- between a DROP VIEW and its CREATE below would miss the hourly rollups (the minute
-- rollups, which the short windows read, always have it).
--
-- Names differ from the source columns a view reads (ClickHouse substitutes a SELECT alias
-- wherever the name appears in that query).

ALTER TABLE findings_gpu_hour
    ADD COLUMN IF NOT EXISTS gpu_idx            SimpleAggregateFunction(max, UInt16),
    ADD COLUMN IF NOT EXISTS util_peak          SimpleAggregateFunction(max, Float32),
    ADD COLUMN IF NOT EXISTS power_total_mw     SimpleAggregateFunction(sum, UInt64),
    ADD COLUMN IF NOT EXISTS power_count        SimpleAggregateFunction(sum, UInt64),
    ADD COLUMN IF NOT EXISTS temperature_peak_c SimpleAggregateFunction(max, Nullable(UInt8)),
    ADD COLUMN IF NOT EXISTS requests_started   SimpleAggregateFunction(sum, UInt64);

ALTER TABLE findings_deployment_hour
    ADD COLUMN IF NOT EXISTS e2e_digest AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    ADD COLUMN IF NOT EXISTS host_set   AggregateFunction(uniq, String);

ALTER TABLE findings_deployment_day
    ADD COLUMN IF NOT EXISTS day_e2e    AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    ADD COLUMN IF NOT EXISTS day_hosts  AggregateFunction(uniq, String);

-- The dashboards' views stop.
DROP VIEW IF EXISTS gpu_hour_mv;
DROP VIEW IF EXISTS gpu_hour_inflight_mv;
DROP VIEW IF EXISTS deployment_hour_mv;
DROP VIEW IF EXISTS engine_hour_mv;

-- The findings' views, with the new columns.
DROP VIEW IF EXISTS findings_gpu_hour_mv;

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
    max(mem_total_max)                                                      AS mem_total_peak,
    max(gpu_index)                                                          AS gpu_idx,
    max(toFloat32(ifNull(util_peak_, 0)))                                   AS util_peak,
    sum(power_sum_mw)                                                       AS power_total_mw,
    sum(power_n)                                                            AS power_count,
    max(temperature_max_c)                                                  AS temperature_peak_c
FROM gpu_minute
GROUP BY hour, cluster, host, gpu_uuid;

DROP VIEW IF EXISTS findings_gpu_hour_inflight_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS findings_gpu_hour_inflight_mv TO findings_gpu_hour AS
SELECT
    toStartOfHour(minute)                                                   AS hour,
    cluster, host, gpu_uuid,
    groupBitOrIf(bitShiftLeft(toUInt64(1), toMinute(minute)), busy_s > 0)   AS inflight,
    sum(busy_s)                                                             AS inflight_s,
    max(deployment)                                                         AS request_deployment,
    sum(requests)                                                           AS requests_started
FROM inflight_minute
GROUP BY hour, cluster, host, gpu_uuid;

DROP VIEW IF EXISTS findings_deployment_hour_mv;

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
    sumMap(prompt_hist)                                                     AS prompts,
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(e2e_q)                 AS e2e_digest,
    uniqMergeState(hosts)                                                   AS host_set
FROM deployment_minute
GROUP BY hour, cluster, deployment, model;

DROP VIEW IF EXISTS findings_deployment_day_mv;

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
    sumMap(prompts)                                                         AS day_prompts,
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(e2e_digest)            AS day_e2e,
    uniqMergeState(host_set)                                                AS day_hosts
FROM findings_deployment_hour
GROUP BY day, cluster, deployment, model;

-- What only the dashboards' tables held, copied over. Each copy carries a deduplication
-- token: if the server stops after a copy and before this migration is recorded, the copy
-- run again on restart is dropped (the kept tables keep a deduplication window).
INSERT INTO findings_gpu_hour
    (hour, cluster, host, gpu_uuid, gpu_idx, util_peak, power_total_mw, power_count,
     temperature_peak_c, requests_started)
SELECT hour, cluster, host, gpu_uuid, max(gpu_index), max(util_max), sum(power_sum_mw), sum(power_n),
       max(temperature_max_c), sum(requests)
FROM gpu_hour
GROUP BY hour, cluster, host, gpu_uuid
SETTINGS insert_deduplicate = 1, insert_deduplication_token = 'migration-0005-gpu-hour';

-- The framework goes along: anyLast must not pick the copy's ''.
INSERT INTO findings_deployment_hour (hour, cluster, deployment, model, engine_framework, e2e_digest, host_set)
SELECT hour, cluster, deployment, model, anyLast(framework),
       quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(e2e_q), uniqMergeState(hosts)
FROM deployment_hour
GROUP BY hour, cluster, deployment, model
SETTINGS insert_deduplicate = 1, insert_deduplication_token = 'migration-0005-deployment-hour',
         deduplicate_blocks_in_dependent_materialized_views = 1;

DROP TABLE IF EXISTS gpu_hour;
DROP TABLE IF EXISTS deployment_hour;
DROP TABLE IF EXISTS engine_hour;
