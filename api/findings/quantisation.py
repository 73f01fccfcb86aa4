"""Quantisation candidates (DESIGN §4.4): deployments whose decode runs near the
weight-bytes / HBM-bandwidth floor (memory-bound) or that run out of KV cache
(memory-starved), with what FP8 / INT8 / INT4 weights would change."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from api.findings.catalogue import GpuSpec, lookup
from api.findings.inputs import Deployment
from api.findings.model import Effect, Finding, Scope, ScopeKind, Severity, per_week, severity_for, usd
from api.findings.settings import FindingsSettings
from api.timewindow import Window

QUERY = "findings.deployment_traffic"
_MOE = re.compile(r"(?<![\d.])(\d+)x(\d+(?:\.\d+)?)b(?![a-z])", re.IGNORECASE)
_DENSE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)b(?![a-z])", re.IGNORECASE)
QUALITY_CAVEAT = (
    "Quantisation changes the model's outputs: evaluate quality on your own tasks before switching "
    "(FP8 is usually close to lossless; INT4 can hurt reasoning, code and long-context tasks)."
)


def params_from_name(model: str) -> float | None:
    """Billions of parameters named in a model id: `Llama-3.1-70B-Instruct` → 70,
    `Mixtral-8x7B` → 56 (experts × size, an upper bound: set params_b for MoE models),
    `Qwen2.5-0.5B` → 0.5. None when no size is named."""
    moe = _MOE.search(model)
    if moe:
        return int(moe.group(1)) * float(moe.group(2))
    sizes = _DENSE.findall(model)
    return float(sizes[-1]) if sizes else None


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    bits: float
    tpot_s: float
    freed_gb_per_replica: float
    gpus_per_replica: int


def decode_floor_s(params_b: float, bits: float, gpus: int, spec: GpuSpec) -> float:
    """Seconds per decode step at batch 1: every weight byte read once, the replica's GPUs
    reading in parallel: params × bits / 8 / (GPUs × bandwidth)."""
    return params_b * 1e9 * bits / 8 / (gpus * spec.bandwidth_bytes_s)


def options(dep: Deployment, spec: GpuSpec, tpot_s: float, settings: FindingsSettings) -> list[Option]:
    """FP8 (INT8 on GPUs without FP8) and INT4 below the served precision. Per-token time
    loses the weight-read share that shrinks: tpot' = tpot − floor × (1 − bits'/bits).
    GPUs per replica: fewest that hold the new weights plus the memory the KV cache uses now."""
    assert dep.params_b is not None
    bits = dep.weight_bits
    floor = decode_floor_s(dep.params_b, bits, dep.gpus_per_replica, spec)
    weights = dep.params_b * 1e9 * bits / 8
    used = (dep.mem_used_peak_bytes or 0) * dep.gpus_per_replica
    kv_bytes = max(0.0, used - weights)
    kv = dep.engine.get("kv_cache_usage")
    if kv is not None and kv.max is not None:
        kv_bytes *= kv.max
    per_gpu = (dep.mem_total_bytes or spec.memory_bytes) * (1 - settings.wrong_type_headroom)
    out = []
    for name, new_bits in (("FP8" if spec.has_fp8 else "INT8", 8), ("INT4", 4)):
        if new_bits >= bits:
            continue
        new_weights = dep.params_b * 1e9 * new_bits / 8
        gpus = max(1, min(dep.gpus_per_replica, math.ceil((new_weights + kv_bytes) / per_gpu)))
        out.append(
            Option(
                name=name,
                bits=new_bits,
                tpot_s=tpot_s - floor * (1 - new_bits / bits),
                freed_gb_per_replica=(weights - new_weights) / 1e9,
                gpus_per_replica=gpus,
            )
        )
    return out


def quantisation_findings(
    deployments: Sequence[Deployment], window: Window, settings: FindingsSettings
) -> list[Finding]:
    out = []
    for dep in deployments:
        finding = quantisation_finding(dep, window, settings)
        if finding is not None:
            out.append(finding)
    return out


def quantisation_finding(dep: Deployment, window: Window, settings: FindingsSettings) -> Finding | None:
    match = lookup(dep.gpu_name)
    traffic = dep.traffic
    if match is None or dep.params_b is None or traffic is None or traffic.tpot is None:
        return None
    spec = match.spec
    tpot = traffic.tpot.p50
    floor = decode_floor_s(dep.params_b, dep.weight_bits, dep.gpus_per_replica, spec)
    ratio = tpot / floor if floor > 0 else math.inf
    bw_bound = (
        dep.dram_bw_busy_mean_pct is not None and dep.dram_bw_busy_mean_pct >= settings.quant_dram_bw_pct
    )
    memory_bound = ratio <= settings.quant_floor_ratio or bw_bound
    kv = dep.engine.get("kv_cache_usage")
    kv_share = kv.saturated / kv.minutes if kv is not None and kv.minutes else 0.0
    preemptions = dep.engine.increase("preemptions")
    starved = kv_share >= settings.kv_saturated_min_share or preemptions > 0
    if not (memory_bound or starved):
        return None
    opts = options(dep, spec, tpot, settings)
    if not opts:
        return None
    best = opts[0]
    fewer = [o for o in opts if o.gpus_per_replica < dep.gpus_per_replica]
    saving_opt = fewer[0] if fewer else None
    weekly = 0.0
    if saving_opt is not None:
        freed_gpu_hours = dep.gpu_hours * (1 - saving_opt.gpus_per_replica / dep.gpus_per_replica)
        weekly = per_week(freed_gpu_hours * dep.usd_per_gpu_hour, window)
    why = []
    if memory_bound:
        why.append(
            f"decode runs at {ratio:.1f}× the weight-read floor "
            f"({tpot * 1000:.1f} ms vs {floor * 1000:.1f} ms/token)"
        )
    if starved:
        why.append(
            f"the KV cache is full in {kv_share:.0%} of replica-minutes, {preemptions:,.0f} preemptions"
        )
    gain = 1 - best.tpot_s / tpot
    title = (
        f"{dep.name}: {'; '.join(why)} — {best.name} weights would cut per-token time ~{gain:.0%} and free "
        f"{best.freed_gb_per_replica:.0f} GB per replica"
    )
    if saving_opt is not None:
        fits = f"{saving_opt.gpus_per_replica} GPU(s) per replica"
        title += f"; {saving_opt.name} fits on {fits}, {usd(weekly)}/week"
    evidence = {
        "model_params_b": dep.params_b,
        "params_source": dep.params_source,
        "weight_bits": dep.weight_bits,
        "gpu": spec.key,
        "gpus_per_replica": dep.gpus_per_replica,
        "bandwidth_gbs": spec.bandwidth_gbs,
        "tpot_p50_s": round(tpot, 6),
        "floor_s": round(floor, 6),
        "floor_ratio": round(ratio, 3),
        "dram_bw_busy_mean_pct": dep.dram_bw_busy_mean_pct,
        "memory_bound": memory_bound,
        "kv_saturated_share": round(kv_share, 4),
        "preemptions": preemptions,
        "memory_starved": starved,
        "options": [
            {
                "name": o.name,
                "bits": o.bits,
                "tpot_s": round(o.tpot_s, 6),
                "per_token_change": round(o.tpot_s / tpot - 1, 4),
                "freed_gb_per_replica": round(o.freed_gb_per_replica, 2),
                "gpus_per_replica": o.gpus_per_replica,
            }
            for o in opts
        ],
        "usd_per_week": round(weekly, 2),
    }
    caveats = [QUALITY_CAVEAT]
    if not spec.has_fp8:
        caveats.append(f"{spec.label} has no FP8 tensor cores: INT8 (or weight-only FP8 kernels) instead.")
    if dep.params_source == "model name":
        caveats.append("The parameter count was read from the model name; set params_b for MoE models.")
    recommendation = f"Serve {best.name} weights (e.g. an FP8/AWQ/GPTQ checkpoint); " + (
        "use the freed memory as KV cache to stop preemptions."
        if starved
        else "decode gets faster in step with bytes per weight."
    )
    return Finding(
        kind="quantisation",
        severity=severity_for(weekly, settings) if weekly > 0 else Severity.LOW,
        scope=Scope(ScopeKind.DEPLOYMENT, dep.name, dep.cluster),
        window=window,
        title=title,
        evidence=evidence,
        query=QUERY,
        weekly_usd=weekly,
        effect=Effect.SAVING if weekly > 0 else Effect.NONE,
        recommendation=recommendation,
        caveats=tuple(caveats),
    )
