"""One module per span convention. Each exposes:

- `NAME`: the framework name stored with the row;
- `claims(span) -> bool`: whether a root span is a request in this convention;
- `read(span) -> Fields`: the request's fields, phases in seconds, None where unreported.

`CONVENTIONS` is tried in order; the first that claims a span reads it. Adding an engine
means adding a module here and a line to the tuple.
"""

from api.ingest.conventions import genai, generic, sglang, tgi, vllm

CONVENTIONS = (vllm, sglang, tgi, genai, generic)

__all__ = ["CONVENTIONS"]
