"""The GPU catalogue and the price book.

Specs are NVIDIA's published figures for the data-centre parts (dense, i.e. without
structured sparsity). Prices are indicative on-demand list prices per GPU-hour from
public cloud and GPU-cloud price pages (2025); every team pays something else, so they
are defaults to override with `INFERWATCH_COST__GPU_PRICES` / `__HOST_PRICES`.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from api.findings.settings import CostSettings


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """One GPU model. `bf16_tflops` is dense BF16 tensor throughput (FP16 on the T4, which
    has no BF16); `fp8_tflops` is 0 where the GPU has no FP8 tensor cores."""

    key: str
    label: str
    memory_gb: float
    bandwidth_gbs: float
    bf16_tflops: float
    fp8_tflops: float
    usd_per_hour: float

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9

    @property
    def bandwidth_bytes_s(self) -> float:
        return self.bandwidth_gbs * 1e9

    @property
    def has_fp8(self) -> bool:
        return self.fp8_tflops > 0


CATALOGUE: tuple[GpuSpec, ...] = (
    GpuSpec("h200", "H200 SXM 141GB", 141, 4800, 989.5, 1979, 3.80),
    GpuSpec("h200-nvl", "H200 NVL 141GB", 141, 4800, 835.5, 1671, 3.50),
    GpuSpec("h100-sxm", "H100 SXM 80GB", 80, 3350, 989.5, 1979, 2.99),
    GpuSpec("h100-nvl", "H100 NVL 94GB", 94, 3900, 835.5, 1671, 2.79),
    GpuSpec("h100-pcie", "H100 PCIe 80GB", 80, 2000, 756.5, 1513, 2.49),
    GpuSpec("a100-80gb", "A100 SXM 80GB", 80, 2039, 312, 0, 1.79),
    GpuSpec("a100-80gb-pcie", "A100 PCIe 80GB", 80, 1935, 312, 0, 1.69),
    GpuSpec("a100-40gb", "A100 40GB", 40, 1555, 312, 0, 1.29),
    GpuSpec("l40s", "L40S 48GB", 48, 864, 362.05, 733, 1.25),
    GpuSpec("a10", "A10 24GB", 24, 600, 125, 0, 0.75),
    GpuSpec("a10g", "A10G 24GB", 24, 600, 70, 0, 1.01),
    GpuSpec("l4", "L4 24GB", 24, 300, 121, 242.5, 0.70),
    GpuSpec("t4", "T4 16GB", 16, 320, 65, 0, 0.35),
)
BY_KEY: Mapping[str, GpuSpec] = {spec.key: spec for spec in CATALOGUE}

# Most specific first: "l40s" before "l4", "a10g" before "a10", "h100 nvl" before "h100".
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), key)
    for pattern, key in (
        (r"\bh200\b.*\bnvl\b", "h200-nvl"),
        (r"\bgh200\b|\bh200\b", "h200"),
        (r"\bh100\b.*\bnvl\b", "h100-nvl"),
        (r"\bh100\b.*\bpcie\b", "h100-pcie"),
        (r"\bh100\b", "h100-sxm"),
        (r"\ba100\b.*\b80gb\b.*\bpcie\b|\ba100\b.*\bpcie\b.*\b80gb\b", "a100-80gb-pcie"),
        (r"\ba100\b.*\b80gb\b", "a100-80gb"),
        (r"\ba100\b", "a100-40gb"),
        (r"\bl40s\b", "l40s"),
        (r"\ba10g\b", "a10g"),
        (r"\ba10\b", "a10"),
        (r"\bl4\b", "l4"),
        (r"\bt4\b", "t4"),
    )
)
_MIG = re.compile(r"\bmig\b.*?\b(\d)g\.(\d+)gb\b")


def _normalise(name: str) -> str:
    # "NVIDIA A100-SXM4-80GB" → "nvidia a100 sxm4 80gb"; "Tesla T4" → "tesla t4"
    return re.sub(r"[^a-z0-9.]+", " ", name.lower()).strip()


@dataclass(frozen=True, slots=True)
class GpuMatch:
    """A reported GPU name resolved to the catalogue. A MIG instance is a `fraction` of its
    parent (compute slices of 7) and has its own memory."""

    spec: GpuSpec
    fraction: float = 1.0
    memory_gb: float | None = None


@functools.lru_cache(maxsize=1024)
def lookup(gpu_name: str) -> GpuMatch | None:
    """The catalogue entry for an NVML product name, or None when it is not one we know.

    Accepts names as NVML reports them (`NVIDIA H100 80GB HBM3`, `NVIDIA A100-SXM4-80GB`,
    `Tesla T4`, `NVIDIA H100 80GB HBM3 MIG 1g.10gb`) and catalogue keys (`h100-sxm`).
    Kept per name: a fleet reports a few names, and pages price every GPU of it.
    """
    if gpu_name in BY_KEY:
        return GpuMatch(BY_KEY[gpu_name])
    text = _normalise(gpu_name)
    for pattern, key in _RULES:
        if pattern.search(text):
            mig = _MIG.search(text)
            if mig:
                return GpuMatch(BY_KEY[key], fraction=int(mig.group(1)) / 7, memory_gb=float(mig.group(2)))
            return GpuMatch(BY_KEY[key])
    return None


class PriceBook:
    """Dollars per GPU-hour for a GPU on a host. Precedence: a host price (exact host name,
    then the longest matching `prefix*` pool pattern), a GPU price override (by catalogue
    key or NVML name), the catalogue default, then `unknown_gpu_price`. A MIG instance pays
    its fraction of its parent's price."""

    def __init__(self, cost: CostSettings) -> None:
        self._cost = cost
        self._gpu_overrides = {k.lower(): v for k, v in cost.gpu_prices.items()}
        self._pools = sorted(
            (
                (pattern, price)
                for pattern, price in cost.host_prices.items()
                if "*" in pattern or "?" in pattern
            ),
            key=lambda item: -len(item[0]),
        )
        self._prices: dict[tuple[str, str], float] = {}

    def per_hour(self, gpu_name: str, host: str = "") -> float:
        """The price of a GPU-hour (computed once per name and host)."""
        price = self._prices.get((gpu_name, host))
        if price is None:
            price = self._prices[(gpu_name, host)] = self._per_hour(gpu_name, host)
        return price

    def _per_hour(self, gpu_name: str, host: str) -> float:
        match = lookup(gpu_name)
        fraction = match.fraction if match else 1.0
        host_price = self._host_price(host)
        if host_price is not None:
            return host_price * fraction
        override = self._gpu_overrides.get(gpu_name.lower())
        if override is None and match is not None:
            override = self._gpu_overrides.get(match.spec.key)
        if override is not None:
            return override * fraction
        if match is not None:
            return match.spec.usd_per_hour * fraction
        return self._cost.unknown_gpu_price

    def per_hour_of(self, spec: GpuSpec) -> float:
        """The price a catalogue GPU would cost (its override, else its default)."""
        override = self._gpu_overrides.get(spec.key)
        return spec.usd_per_hour if override is None else override

    def _host_price(self, host: str) -> float | None:
        if not host:
            return None
        if host in self._cost.host_prices:
            return self._cost.host_prices[host]
        for pattern, price in self._pools:
            if fnmatch.fnmatchcase(host, pattern):
                return price
        return None
