"""SGLang (`--enable-trace --oltp-traces-endpoint`): a root span named
`"{role} Req {rid[:8]}"` with vLLM's `gen_ai.latency.*` keys, and stage children
(`prefill_forward`, `decode_forward`, …).

SGLang measures prefill from dispatch to the first token, so its prefill includes the
time queued; we subtract the queue time so prefill means the same as elsewhere."""

from __future__ import annotations

import re

from api.ingest.conventions.common import Fields, child_seconds, genai, number
from api.ingest.spans import Span

NAME = "sglang"

_ROOT = re.compile(r"^\S*\s*Req [0-9A-Za-z_-]{1,64}$")


def claims(span: Span) -> bool:
    return bool(_ROOT.match(span.name))


def read(span: Span) -> Fields:
    a = span.attrs
    fields = genai(span)
    fields.queue_s = number(a, "gen_ai.latency.time_in_queue")
    fields.ttft_s = number(a, "gen_ai.latency.time_to_first_token")
    fields.e2e_s = number(a, "gen_ai.latency.e2e")
    fields.decode_s = number(a, "gen_ai.latency.time_in_model_decode")
    prefill = number(a, "gen_ai.latency.time_in_model_prefill")
    if prefill is not None and fields.queue_s is not None and prefill == prefill:
        prefill = max(0.0, prefill - fields.queue_s)
    fields.prefill_s = prefill
    if fields.prefill_s is None:
        fields.prefill_s = child_seconds(span, "prefill_forward")
    if fields.decode_s is None:
        fields.decode_s = child_seconds(span, "decode_forward")
    if not fields.request_id:
        fields.request_id = span.name.rsplit(" ", 1)[-1]
    return fields
