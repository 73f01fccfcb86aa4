"""Speculative decoding (DESIGN §4.3): deployments whose requests are dominated by decode
at low concurrency (memory-bandwidth-bound, where draft tokens are nearly free), with the
speed-up of Leviathan et al. (2023); and deployments where it is on but hurts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from api.findings.inputs import Deployment, Traffic
from api.findings.model import Effect, Finding, Scope, ScopeKind, Severity
from api.findings.settings import FindingsSettings
from api.timewindow import Window

QUERY = "findings.deployment_traffic"


def speedup(alpha: float, gamma: int, c: float) -> float:
    """Expected wall-time speed-up of speculative decoding, Leviathan et al. (2023), eq. 1:
    S = (1 − α^(γ+1)) / ((1 − α)(γ·c + 1)). α: per-token acceptance rate (0 < α < 1),
    γ: draft tokens per step, c: cost of a draft step relative to a target step."""
    if not 0 < alpha < 1:
        raise ValueError("the acceptance rate must lie strictly between 0 and 1")
    return (1 - alpha ** (gamma + 1)) / ((1 - alpha) * (gamma * c + 1))


def decile_floor(share: float) -> int:
    """The first decode-share decile counted for a threshold (deciles hold [10d, 10d+10) %)."""
    return math.floor(share * 10 + 1e-9)


def token_bucket(tokens: int) -> int:
    """The log2 bucket holding `tokens`: floor(log2(tokens + 1)); bucket b is [2^b − 1, 2^(b+1) − 1)."""
    return math.floor(math.log2(tokens + 1))


@dataclass(frozen=True, slots=True)
class DecodeBound:
    requests: int
    share: float
    decode_share: float
    e2e_mean_s: float
    decode_mean_s: float


def decode_bound(traffic: Traffic, settings: FindingsSettings) -> DecodeBound:
    """Requests with decode ≥ spec_decode_share of e2e and ≥ spec_min_output_tokens output
    tokens, counted from the shape histogram (decile and log2-bucket resolution)."""
    d0 = decile_floor(settings.spec_decode_share)
    b0 = token_bucket(settings.spec_min_output_tokens)
    n = 0
    e2e = decode = 0.0
    total_decode = sum(c.decode_s for c in traffic.shape.values())
    for key, cell in traffic.shape.items():
        if key // 16 >= d0 and key % 16 >= b0:
            n += cell.requests
            e2e += cell.e2e_s
            decode += cell.decode_s
    total = sum(c.requests for c in traffic.shape.values())
    return DecodeBound(
        requests=n,
        share=n / total if total else 0.0,
        decode_share=decode / total_decode if total_decode else 0.0,
        e2e_mean_s=e2e / n if n else 0.0,
        decode_mean_s=decode / n if n else 0.0,
    )


def speculative_findings(
    deployments: Sequence[Deployment], window: Window, settings: FindingsSettings
) -> list[Finding]:
    out = []
    for dep in deployments:
        finding = speculative_finding(dep, window, settings)
        if finding is not None:
            out.append(finding)
    return out


def speculative_finding(dep: Deployment, window: Window, settings: FindingsSettings) -> Finding | None:
    traffic = dep.traffic
    if traffic is None or traffic.requests == 0 or dep.concurrency is None:
        return None
    engine = dep.engine
    drafts = engine.increase("spec_draft_tokens")
    accepted = engine.increase("spec_accepted_tokens")
    steps = engine.increase("spec_drafts")
    rate = engine.mean("spec_accept_rate")
    enabled = drafts > 0 or rate is not None
    if drafts > 0:
        alpha, alpha_source = accepted / drafts, "measured: accepted / draft tokens"
    elif rate is not None:
        alpha, alpha_source = rate, "measured: engine acceptance rate"
    else:
        alpha, alpha_source = settings.spec_default_acceptance, "default (spec_default_acceptance)"
    alpha = min(max(alpha, 1e-6), 1 - 1e-6)
    gamma = round(drafts / steps) if drafts > 0 and steps > 0 else settings.spec_draft_tokens
    c = settings.spec_draft_cost_ratio
    s = speedup(alpha, gamma, c)
    bound = decode_bound(traffic, settings)
    evidence: dict[str, object] = {
        "requests": traffic.requests,
        "decode_bound_requests": bound.requests,
        "decode_bound_share": round(bound.share, 4),
        "decode_time_share": round(bound.decode_share, 4),
        "concurrency": round(dep.concurrency, 3),
        "concurrency_source": dep.concurrency_source,
        "alpha": round(alpha, 4),
        "alpha_source": alpha_source,
        "gamma": gamma,
        "draft_cost_ratio": c,
        "speedup": round(s, 4),
        "speculative_enabled": enabled,
        "decode_share_threshold": settings.spec_decode_share,
        "min_output_tokens": settings.spec_min_output_tokens,
    }
    scope = Scope(ScopeKind.DEPLOYMENT, dep.name, dep.cluster)
    if enabled:
        high = dep.concurrency >= settings.spec_high_concurrency
        if s >= 1 and not high:
            return None
        why = (
            f"S = {s:.2f} < 1 at α = {alpha:.2f}"
            if s < 1
            else f"{dep.concurrency:.1f} requests in flight per replica"
        )
        return Finding(
            kind="speculative_off",
            severity=Severity.MEDIUM,
            scope=scope,
            window=window,
            title=f"{dep.name}: speculative decoding is on but costs throughput ({why}) — turn it off",
            evidence=evidence,
            query=QUERY,
            weekly_usd=0.0,
            effect=Effect.NONE,
            recommendation=(
                "Disable speculative decoding (or enable it only below a concurrency limit): at high batch "
                "sizes decode is compute-bound and rejected draft tokens are wasted work."
            ),
            caveats=("c, the draft/target cost ratio, is a setting, not measured.",),
        )
    if (
        bound.share < settings.spec_min_request_share
        or dep.concurrency > settings.spec_max_concurrency
        or s <= 1
    ):
        return None
    saved_s = bound.decode_mean_s * (1 - 1 / s)
    evidence.update(
        {
            "e2e_mean_s": round(bound.e2e_mean_s, 4),
            "e2e_mean_after_s": round(bound.e2e_mean_s - saved_s, 4),
            "decode_mean_s": round(bound.decode_mean_s, 4),
            "latency_change": round(-saved_s / bound.e2e_mean_s, 4) if bound.e2e_mean_s else 0.0,
        }
    )
    return Finding(
        kind="speculative_candidate",
        severity=Severity.MEDIUM if bound.share >= 0.5 else Severity.LOW,
        scope=scope,
        window=window,
        title=(
            f"{dep.name}: {bound.share:.0%} of requests are decode-bound at {dep.concurrency:.1f} in "
            f"flight — "
            f"speculative decoding could cut their latency {saved_s / bound.e2e_mean_s:.0%} (S = {s:.2f})"
        ),
        evidence=evidence,
        query=QUERY,
        weekly_usd=0.0,
        effect=Effect.NONE,
        recommendation=(
            f"Enable speculative decoding (a small draft model, EAGLE or n-gram drafting) with γ = {gamma}; "
            "measure acceptance on real traffic and keep it off above "
            f"{settings.spec_high_concurrency:g} requests in flight."
        ),
        caveats=(
            f"α is {alpha_source}; the real speed-up depends on how predictable the outputs are.",
            "Gains shrink as concurrency grows: decode becomes compute-bound.",
        ),
    )
