"""Reading request rows back (the requests explorer and `/api/v1/requests`)."""

from api.store.gateway import Query

REQUEST_COLUMNS = """
    time, end_time, trace_id, span_id, request_id, cluster, host, deployment, model, framework,
    prompt_tokens, cached_tokens, output_tokens, n, max_tokens, temperature,
    queue_s, ttft_s, prefill_s, decode_s, e2e_s, finish_reason, error, gpu_uuids
"""

# Keyset pagination, newest first: the cursor is the (time, row key) of the last row seen,
# the row key being span id then trace id (a request is both: span ids may repeat across traces).
# Two steps: the page's keys from the few columns the filters and the order need, then the
# whole rows of just those keys (reading every column of a day's requests costs ~10×).
_LIST_WINDOW = "time >= {since:DateTime64(6, 'UTC')} AND time < {until:DateTime64(6, 'UTC')}"
LIST_REQUESTS = Query(
    "requests.list",
    f"""
    SELECT {REQUEST_COLUMNS}
    FROM requests
    WHERE {_LIST_WINDOW}
      AND (time, concat(span_id, trace_id)) IN (
        SELECT time, concat(span_id, trace_id) AS row_key
        FROM requests
        WHERE {_LIST_WINDOW}
          AND ({{deployment:String}} = '' OR deployment = {{deployment:String}})
          AND ({{model:String}} = '' OR model = {{model:String}})
          AND ({{cluster:String}} = '' OR cluster = {{cluster:String}})
          AND (time, row_key) < ({{before_time:DateTime64(6, 'UTC')}}, {{before_key:String}})
        ORDER BY time DESC, row_key DESC
        LIMIT 1 BY row_key
        LIMIT {{limit:UInt32}})
    ORDER BY time DESC, span_id DESC, trace_id DESC
    LIMIT 1 BY span_id, trace_id
    LIMIT {{limit:UInt32}}
    """,
)
