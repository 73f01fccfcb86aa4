"""Workload shape (DESIGN §4.5): the prefill/decode split, prefix caching for long prompts
served mostly uncached, chunked prefill for TTFT spikes from long prompts, and the workload
class (interactive, bulk, mixed → separate serving tiers)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from api.findings.inputs import Deployment, Traffic
from api.findings.model import Effect, Finding, Scope, ScopeKind, Severity
from api.findings.settings import FindingsSettings
from api.findings.speculative import token_bucket
from api.timewindow import Window

QUERY = "findings.deployment_traffic"
SHORT_BUCKETS_BELOW_LONG = 2  # "short" prompts: at least 2 log2 buckets (4×) below "long"


@dataclass(frozen=True, slots=True)
class Shape:
    """Workload figures of one deployment. `prefill_decode_ratio` is None without phased requests."""

    prefill_decode_ratio: float | None
    long_share: float
    short_share: float
    cached_share: float
    ttft_long_mean_s: float | None
    ttft_short_mean_s: float | None
    ttft_p99_p50: float | None
    rate_cv: float
    workload_class: str

    def figures(self) -> dict[str, object]:
        return {
            "prefill_decode_ratio": None
            if self.prefill_decode_ratio is None
            else round(self.prefill_decode_ratio, 4),
            "long_prompt_share": round(self.long_share, 4),
            "short_prompt_share": round(self.short_share, 4),
            "cached_prompt_share": round(self.cached_share, 4),
            "ttft_long_mean_s": None if self.ttft_long_mean_s is None else round(self.ttft_long_mean_s, 4),
            "ttft_short_mean_s": None if self.ttft_short_mean_s is None else round(self.ttft_short_mean_s, 4),
            "ttft_p99_over_p50": None if self.ttft_p99_p50 is None else round(self.ttft_p99_p50, 3),
            "rate_cv": round(self.rate_cv, 4),
            "workload_class": self.workload_class,
        }


def shape_of(traffic: Traffic, settings: FindingsSettings, cached_share: float | None = None) -> Shape:
    """Long prompts: prompt bucket ≥ bucket(long_prompt_tokens); short: 2 buckets lower.
    Class: mixed when short and long prompts are each ≥ mixed_min_share of requests; else
    bulk when requests per bucket vary with CV ≥ bursty_cv; else interactive."""
    long_b = token_bucket(settings.long_prompt_tokens)
    short_b = long_b - SHORT_BUCKETS_BELOW_LONG
    total = sum(c.requests for c in traffic.prompts.values())
    long_n = sum(c.requests for b, c in traffic.prompts.items() if b >= long_b)
    short_n = sum(c.requests for b, c in traffic.prompts.items() if b < short_b)
    long_ttft = sum(c.ttft_s for b, c in traffic.prompts.items() if b >= long_b)
    rest_n = sum(c.requests for b, c in traffic.prompts.items() if b < long_b)
    rest_ttft = sum(c.ttft_s for b, c in traffic.prompts.items() if b < long_b)
    if cached_share is None:
        cached_share = traffic.cached_tokens / traffic.prompt_tokens if traffic.prompt_tokens else 0.0
    long_share = long_n / total if total else 0.0
    short_share = short_n / total if total else 0.0
    if long_share >= settings.mixed_min_share and short_share >= settings.mixed_min_share:
        klass = "mixed"
    elif traffic.rate_cv >= settings.bursty_cv:
        klass = "bulk"
    else:
        klass = "interactive"
    ratio = traffic.prefill_s / traffic.decode_s if traffic.phased and traffic.decode_s > 0 else None
    p99_p50 = traffic.ttft.p99 / traffic.ttft.p50 if traffic.ttft and traffic.ttft.p50 > 0 else None
    return Shape(
        prefill_decode_ratio=ratio,
        long_share=long_share,
        short_share=short_share,
        cached_share=cached_share,
        ttft_long_mean_s=long_ttft / long_n if long_n else None,
        ttft_short_mean_s=rest_ttft / rest_n if rest_n else None,
        ttft_p99_p50=p99_p50,
        rate_cv=traffic.rate_cv,
        workload_class=klass,
    )


def workload_findings(
    deployments: Sequence[Deployment], window: Window, settings: FindingsSettings
) -> list[Finding]:
    out: list[Finding] = []
    for dep in deployments:
        out += deployment_workload(dep, window, settings)
    return out


def _finding(
    dep: Deployment,
    window: Window,
    kind: str,
    title: str,
    shape: Shape,
    extra: dict[str, object],
    recommendation: str,
    caveats: tuple[str, ...],
) -> Finding:
    return Finding(
        kind=kind,
        severity=Severity.LOW,
        scope=Scope(ScopeKind.DEPLOYMENT, dep.name, dep.cluster),
        window=window,
        title=title,
        evidence={**shape.figures(), **extra},
        query=QUERY,
        weekly_usd=0.0,
        effect=Effect.NONE,
        recommendation=recommendation,
        caveats=caveats,
    )


def deployment_workload(dep: Deployment, window: Window, settings: FindingsSettings) -> list[Finding]:
    traffic = dep.traffic
    if traffic is None or traffic.requests == 0:
        return []
    engine_hits = dep.engine.increase("prefix_cache_hits")
    engine_queries = dep.engine.increase("prefix_cache_queries")
    engine_rate = dep.engine.mean("prefix_cache_hit_rate")
    cached = engine_hits / engine_queries if engine_queries > 0 else engine_rate
    shape = shape_of(traffic, settings, cached)
    base = {"requests": traffic.requests, "phased_requests": traffic.phased}
    out = []
    ratio = shape.prefill_decode_ratio
    if ratio is not None and ratio >= settings.prefill_heavy_ratio:
        out.append(
            _finding(
                dep,
                window,
                "workload_prefill_heavy",
                f"{dep.name}: prefill takes {ratio:.2f}× the decode time ({ratio / (1 + ratio):.0%} of "
                f"model time)",
                shape,
                {**base, "prefill_heavy_ratio": settings.prefill_heavy_ratio},
                "Optimise for prefill: prefix caching, shorter or cached system prompts, chunked "
                "prefill, and "
                "GPUs with more compute per dollar; consider disaggregated prefill/decode at scale.",
                ("Prefill and decode are each engine's own phase timings (queueing excluded).",),
            )
        )
    if (
        shape.long_share >= settings.prefix_long_share
        and shape.cached_share <= settings.prefix_cached_share_max
    ):
        out.append(
            _finding(
                dep,
                window,
                "workload_prefix_caching",
                f"{dep.name}: {shape.long_share:.0%} of requests have prompts ≥ "
                f"{settings.long_prompt_tokens:,} tokens "
                f"and only {shape.cached_share:.0%} of prompt tokens come from cache — enable prefix caching",
                shape,
                {
                    **base,
                    "long_prompt_tokens": settings.long_prompt_tokens,
                    "cached_share_max": settings.prefix_cached_share_max,
                },
                "Enable automatic prefix caching (vLLM --enable-prefix-caching, SGLang RadixAttention) "
                "and put "
                "shared content (system prompt, documents) at the start of prompts.",
                (
                    "Prefix caching only helps prompts that share a prefix; the rollups do not see "
                    "prompt text.",
                ),
            )
        )
    if (
        shape.ttft_long_mean_s is not None
        and shape.ttft_short_mean_s
        and shape.ttft_long_mean_s / shape.ttft_short_mean_s >= settings.chunked_ttft_ratio
        and shape.ttft_p99_p50 is not None
        and shape.ttft_p99_p50 >= settings.chunked_ttft_p99_ratio
    ):
        out.append(
            _finding(
                dep,
                window,
                "workload_chunked_prefill",
                f"{dep.name}: long prompts take {shape.ttft_long_mean_s / shape.ttft_short_mean_s:.1f}× "
                f"longer to "
                f"first token and TTFT p99 is {shape.ttft_p99_p50:.1f}× p50 — enable chunked prefill",
                shape,
                {**base, "chunked_ttft_ratio": settings.chunked_ttft_ratio},
                "Enable chunked prefill (vLLM --enable-chunked-prefill with a max_num_batched_tokens budget, "
                "SGLang --chunked-prefill-size) so long prefills stop stalling other requests.",
                ("Chunking trades a little throughput for steadier TTFT and inter-token latency.",),
            )
        )
    if shape.workload_class == "mixed":
        out.append(
            _finding(
                dep,
                window,
                "workload_mixed",
                f"{dep.name}: mixed workload — {shape.short_share:.0%} short and {shape.long_share:.0%} "
                f"long prompts "
                "share one fleet; serve them on separate tiers",
                shape,
                {**base, "mixed_min_share": settings.mixed_min_share},
                "Route short interactive requests and long bulk requests to separate deployments, each tuned "
                "(batch size, chunking, GPU type) for its own latency target.",
                ("The class is a heuristic from prompt-length mix and burstiness.",),
            )
        )
    return out
