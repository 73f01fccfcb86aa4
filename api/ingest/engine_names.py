"""Engine metric names → the canonical names stored in `engine_metrics` (docs/telemetry.md).

Old and new names both map; a trailing `_total` is stripped before lookup. A name may
apply only to series with a given label value (Triton's request_type), or take its value
from a label (vLLM's cache_config_info is an info-style gauge whose labels carry numbers).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Canonical:
    name: str
    engine: str
    when: tuple[str, str] | None = None
    value_label: str | None = None


def _m(name: str, engine: str, **kw: object) -> Canonical:
    return Canonical(name, engine, **kw)  # type: ignore[arg-type]


ENGINE_METRICS: dict[str, list[Canonical]] = {
    # vLLM (v1 names, with the v0 names they replaced)
    "vllm:num_requests_running": [_m("requests_running", "vllm")],
    "vllm:num_requests_waiting": [_m("requests_waiting", "vllm")],
    "vllm:kv_cache_usage_perc": [_m("kv_cache_usage", "vllm")],
    "vllm:gpu_cache_usage_perc": [_m("kv_cache_usage", "vllm")],
    "vllm:num_preemptions": [_m("preemptions", "vllm")],
    "vllm:num_preemptions_total": [_m("preemptions", "vllm")],
    "vllm:prefix_cache_queries": [_m("prefix_cache_queries", "vllm")],
    "vllm:prefix_cache_hits": [_m("prefix_cache_hits", "vllm")],
    "vllm:gpu_prefix_cache_queries": [_m("prefix_cache_queries", "vllm")],
    "vllm:gpu_prefix_cache_hits": [_m("prefix_cache_hits", "vllm")],
    "vllm:spec_decode_num_draft_tokens": [_m("spec_draft_tokens", "vllm")],
    "vllm:spec_decode_num_accepted_tokens": [_m("spec_accepted_tokens", "vllm")],
    "vllm:spec_decode_num_drafts": [_m("spec_drafts", "vllm")],
    "vllm:request_prefill_time_seconds": [_m("prefill_seconds", "vllm")],
    "vllm:request_decode_time_seconds": [_m("decode_seconds", "vllm")],
    "vllm:time_to_first_token_seconds": [_m("ttft_seconds", "vllm")],
    "vllm:inter_token_latency_seconds": [_m("itl_seconds", "vllm")],
    "vllm:time_per_output_token_seconds": [_m("itl_seconds", "vllm")],
    "vllm:e2e_request_latency_seconds": [_m("e2e_seconds", "vllm")],
    "vllm:request_queue_time_seconds": [_m("queue_seconds", "vllm")],
    "vllm:request_success": [_m("requests_success", "vllm")],
    "vllm:prompt_tokens": [_m("prompt_tokens", "vllm")],
    "vllm:generation_tokens": [_m("generation_tokens", "vllm")],
    "vllm:cache_config_info": [
        _m("kv_block_size", "vllm", value_label="block_size"),
        _m("kv_cache_blocks", "vllm", value_label="num_gpu_blocks"),
    ],
    # SGLang
    "sglang:num_running_reqs": [_m("requests_running", "sglang")],
    "sglang:num_queue_reqs": [_m("requests_waiting", "sglang")],
    "sglang:token_usage": [_m("kv_cache_usage", "sglang")],
    "sglang:cache_hit_rate": [_m("prefix_cache_hit_rate", "sglang")],
    "sglang:spec_accept_rate": [_m("spec_accept_rate", "sglang")],
    "sglang:spec_accept_length": [_m("spec_accept_length", "sglang")],
    "sglang:gpu_execution_seconds": [_m("gpu_busy_seconds", "sglang")],
    "sglang:time_to_first_token_seconds": [_m("ttft_seconds", "sglang")],
    "sglang:inter_token_latency_seconds": [_m("itl_seconds", "sglang")],
    "sglang:time_per_output_token_seconds": [_m("itl_seconds", "sglang")],
    "sglang:e2e_request_latency_seconds": [_m("e2e_seconds", "sglang")],
    "sglang:prompt_tokens": [_m("prompt_tokens", "sglang")],
    "sglang:generation_tokens": [_m("generation_tokens", "sglang")],
    # Text Generation Inference
    "tgi_queue_size": [_m("requests_waiting", "tgi")],
    "tgi_batch_current_size": [_m("requests_running", "tgi")],
    "tgi_request_success": [_m("requests_success", "tgi")],
    "tgi_request_failure": [_m("requests_failed", "tgi")],
    "tgi_request_duration": [_m("e2e_seconds", "tgi")],
    "tgi_request_queue_duration": [_m("queue_seconds", "tgi")],
    "tgi_request_mean_time_per_token_duration": [_m("itl_seconds", "tgi")],
    "tgi_batch_inference_duration": [
        _m("prefill_seconds", "tgi", when=("method", "prefill")),
        _m("decode_seconds", "tgi", when=("method", "decode")),
    ],
    "tgi_batch_forward_duration": [
        _m("prefill_forward_seconds", "tgi", when=("method", "prefill")),
        _m("decode_forward_seconds", "tgi", when=("method", "decode")),
    ],
    # Triton / TensorRT-LLM
    "nv_inference_request_success": [_m("requests_success", "triton")],
    "nv_inference_request_failure": [_m("requests_failed", "triton")],
    "nv_inference_pending_request_count": [_m("requests_waiting", "triton")],
    "nv_trt_llm_request_metrics": [
        _m("requests_running", "triton", when=("request_type", "active")),
        _m("requests_waiting", "triton", when=("request_type", "waiting")),
    ],
    "nv_trt_llm_kv_cache_block_metrics": [
        _m("kv_cache_blocks", "triton", when=("kv_cache_block_type", "max")),
        _m("kv_cache_blocks_used", "triton", when=("kv_cache_block_type", "used")),
    ],
    "trtllm_num_requests_waiting": [_m("requests_waiting", "triton")],
    "trtllm_num_requests_running": [_m("requests_running", "triton")],
    "trtllm_kv_cache_utilization": [_m("kv_cache_usage", "triton")],
}


def canonical(name: str, labels: dict[str, str]) -> list[Canonical]:
    """The canonical series a scraped series becomes (empty: unknown, not stored)."""
    base = name[:-6] if name.endswith("_total") else name
    found = ENGINE_METRICS.get(base) or ENGINE_METRICS.get(name) or []
    return [c for c in found if c.when is None or labels.get(c.when[0]) == c.when[1]]
