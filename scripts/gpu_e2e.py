"""End to end on a real GPU: an inferwatch server and a collector beside a small serving
engine, a load pattern (busy, idle, bursts, decode-heavy batch-1 traffic), then the findings
and measurements of what the findings recommend.

    python scripts/gpu_e2e.py --out /tmp/e2e                  # one GPU (cuda:0)
    python scripts/gpu_e2e.py --devices 0,1 --short --out …   # one process over two GPUs

The engine is a Llama-shaped causal language model (RMSNorm, rotary positions, grouped-query
attention, SwiGLU) with random weights — nothing is downloaded — served by a static-batching
loop whose decode steps replay CUDA graphs. It exports one vLLM-convention `llm_request` span
per request (queue, prefill and decode times from CUDA-synchronised clocks) to the collector's
OTLP receiver and serves a vLLM-style Prometheus `/metrics` that the collector scrapes.

After the load, on the same GPU and while the collector samples it, the engine measures what
three findings predict: decode per token against the weight-read floor and with FP8 weights
(quantisation), decode throughput per replica at 1–16 requests in flight against what the
utilisation-based demand of fleet sizing implies, and a draft model with verification
(speculative decoding). The script then reads the store and the findings and prints a table:
hardware, predicted, measured, error. Everything is also written as JSON to ``--out``.

Needs an NVIDIA GPU (FP8 needs Hopper or newer), PyTorch, and the project's dependencies.
``--device cpu --tiny`` runs the same pipeline on a CPU with a toy model (plumbing only).
The pure parts (schedule, spans, /metrics text, predictions, table) are tested in
tests/scripts/test_gpu_e2e.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# The project's modules are imported where they are used: the engine process needs none of
# the server's dependencies (pydantic, chDB), so `engine --selftest` runs on a bare GPU box.
from scripts.procs import free_port, wait_http  # noqa: E402 — after the path is set

DEPLOYMENT = "e2e"
MODEL_NAME = "random-llama"
GRAPH_BATCHES = (1, 2, 4, 8, 16)
IDLE_PCT = 5  # the idle finding's default threshold
BATCH_WAIT_S = 0.005  # a new batch waits this long for requests that arrive together


# --------------------------------------------------------------------------------------------
# Pure parts: shapes, schedule, spans, /metrics, predictions, the table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shape:
    """A Llama-shaped decoder (the fields of a transformers `LlamaConfig`)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    max_len: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def layer_params(self) -> int:
        qkv = self.hidden * (self.heads + 2 * self.kv_heads) * self.head_dim
        out = self.heads * self.head_dim * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        return qkv + out + mlp + 2 * self.hidden  # + the two RMSNorm weights

    def params(self) -> int:
        """Every parameter: layers, token embedding, final norm, LM head (untied)."""
        return self.layers * self.layer_params() + 2 * self.vocab * self.hidden + self.hidden

    def decode_read_params(self) -> int:
        """Parameters a decode step reads in full: all but the embedding table, of which it
        reads only the rows of the batch's tokens."""
        return self.params() - self.vocab * self.hidden


# Llama-3-70B's layer (hidden 8192, 64 heads, 8 KV heads, MLP 28672) eight times: 7.4 B
# parameters, 14.7 GB in bf16, so one decode step at batch 1 reads ~15 GB and is bound by
# memory bandwidth, not by kernel launches.
TARGET = Shape(hidden=8192, layers=8, heads=64, kv_heads=8, intermediate=28672, vocab=32000, max_len=1280)
# A draft model for speculative decoding: same vocabulary, 0.23 B parameters.
DRAFT = Shape(hidden=2048, layers=2, heads=16, kv_heads=4, intermediate=5632, vocab=32000, max_len=1280)
TINY = Shape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=256, max_len=160)
TINY_DRAFT = Shape(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, vocab=256, max_len=160)


@dataclass(frozen=True, slots=True)
class Phase:
    """One part of the load. `closed`: `clients` each send a request, wait for it, send the
    next, for `seconds`. `burst`: `clients` requests at once, `bursts` times, `every` seconds
    apart. `idle`: nothing for `seconds` after the previous phase's last request ended."""

    name: str
    kind: str
    seconds: float
    clients: int = 0
    prompt: int = 0
    output: int = 0
    bursts: int = 0
    every: float = 0.0


def schedule(idle_s: float, scale: float = 1.0, token_div: int = 1) -> list[Phase]:
    """Busy (8 concurrent chat requests), idle, bursts of 16 long prompts, then decode-heavy
    batch-1 traffic (two minutes, so that at least one whole minute holds nothing else).
    `scale` shortens every loaded phase and `token_div` every request (a dry run on a toy
    model)."""
    d = token_div
    return [
        Phase("busy", "closed", 60 * scale, clients=8, prompt=512 // d, output=128 // d),
        Phase("idle", "idle", idle_s),
        Phase("bursts", "burst", 0, clients=16, prompt=1024 // d, output=64 // d, bursts=3, every=15 * scale),
        Phase("decode_heavy", "closed", 120 * scale, clients=1, prompt=128 // d, output=512 // d),
    ]


def padded_batch(n: int, sizes: Sequence[int] = GRAPH_BATCHES) -> int:
    """The smallest captured batch size holding `n` requests."""
    for size in sizes:
        if size >= n:
            return size
    raise ValueError(f"no captured batch size holds {n} requests (largest {max(sizes)})")


@dataclass(frozen=True, slots=True)
class Timing:
    """One served request. Wall-clock arrival; the rest are seconds from CUDA-synchronised
    clocks: queue (arrival → its batch starts), prefill (→ first token), decode (→ last)."""

    request_id: str
    arrival_ns: int
    queue_s: float
    prefill_s: float
    decode_s: float
    prompt_tokens: int
    output_tokens: int

    @property
    def e2e_s(self) -> float:
        return self.queue_s + self.prefill_s + self.decode_s

    @property
    def end_ns(self) -> int:
        return self.arrival_ns + round(self.e2e_s * 1e9)


def span_attributes(t: Timing, model: str = MODEL_NAME) -> dict[str, Any]:
    """The attributes vLLM puts on its `llm_request` span (vllm/tracing.py SpanAttributes)."""
    return {
        "gen_ai.request.id": t.request_id,
        "gen_ai.response.model": model,
        "gen_ai.request.max_tokens": t.output_tokens,
        "gen_ai.request.temperature": 0.0,
        "gen_ai.request.n": 1,
        "gen_ai.usage.prompt_tokens": t.prompt_tokens,
        "gen_ai.usage.completion_tokens": t.output_tokens,
        "gen_ai.latency.time_in_queue": t.queue_s,
        "gen_ai.latency.time_to_first_token": t.queue_s + t.prefill_s,
        "gen_ai.latency.e2e": t.e2e_s,
        "gen_ai.latency.time_in_model_prefill": t.prefill_s,
        "gen_ai.latency.time_in_model_decode": t.decode_s,
        "gen_ai.response.finish_reasons": '["length"]',
    }


@dataclass(slots=True)
class EngineState:
    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    requests: int = 0
    preemptions: int = 0


def metrics_text(state: EngineState, model: str = MODEL_NAME) -> str:
    """vLLM's Prometheus exposition (v1 names) of the engine's state."""
    label = f'{{engine="0",model_name="{model}"}}'
    lines = []
    for name, kind, value in (
        ("vllm:num_requests_running", "gauge", state.running),
        ("vllm:num_requests_waiting", "gauge", state.waiting),
        ("vllm:kv_cache_usage_perc", "gauge", state.kv_usage),
        ("vllm:num_preemptions", "counter", state.preemptions),
        ("vllm:prompt_tokens", "counter", state.prompt_tokens),
        ("vllm:generation_tokens", "counter", state.generation_tokens),
        ("vllm:request_success", "counter", state.requests),
    ):
        sample = name + ("_total" if kind == "counter" else "")  # as prometheus_client writes them
        lines.append(f"# HELP {sample} {name}")
        lines.append(f"# TYPE {sample} {kind}")
        lines.append(f"{sample}{label} {float(value)!r}")
    return "\n".join(lines) + "\n"


def idle_run_seconds(samples: Iterable[tuple[float, float | None]], interval_s: float) -> float:
    """Seconds of the longest run of consecutive idle samples (`(time, util %)`, util below
    the idle threshold): samples × interval, so it is right within one interval."""
    best = run = 0
    for _, util in sorted(samples):
        run = run + 1 if util is not None and util < IDLE_PCT else 0
        best = max(best, run)
    return best * interval_s


def whole_minutes(start: datetime, end: datetime) -> int:
    """Calendar minutes lying wholly inside [start, end): what a minute-resolution idle
    finding can see of an idle interval."""
    first = start.replace(second=0, microsecond=0)
    if first < start:
        first += timedelta(minutes=1)
    last = end.replace(second=0, microsecond=0)
    return max(0, int((last - first).total_seconds() // 60))


def quant_prediction(tpot_s: float, floor_s: float, bits: int, new_bits: int) -> float:
    """The quantisation finding's per-token time with `new_bits` weights (docs/findings.md §4):
    tpot − floor × (1 − bits'/bits)."""
    return tpot_s - floor_s * (1 - new_bits / bits)


def expected_tokens_per_round(alpha: float, gamma: int) -> float:
    """Tokens a speculative round yields on average: (1 − α^(γ+1)) / (1 − α)."""
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def accepted_drafts(draws: Iterable[float], alpha: float, gamma: int) -> int:
    """Draft tokens accepted in one round: leading draws below α, at most γ."""
    n = 0
    for u in draws:
        if n >= gamma or u >= alpha:
            break
        n += 1
    return n


def capacity_from_util(tokens_s: float, busy_pct: float) -> float:
    """Tokens/s a replica could serve at 100 % busy, if its work grew in step with the
    utilisation the fleet finding counts as demand: throughput / busy share."""
    return tokens_s / (busy_pct / 100) if busy_pct > 0 else math.inf


def error_pct(predicted: float, measured: float) -> float:
    """(predicted − measured) / measured, in percent."""
    return (predicted - measured) / measured * 100


@dataclass(frozen=True, slots=True)
class Row:
    check: str
    hardware: str
    predicted: str
    measured: str
    error: str = ""
    ok: bool | None = None


def results_table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table."""
    out = ["| check | hardware | predicted | measured | error | |", "|---|---|---|---|---|---|"]
    for r in rows:
        mark = "" if r.ok is None else ("ok" if r.ok else "**off**")
        out.append(f"| {r.check} | {r.hardware} | {r.predicted} | {r.measured} | {r.error} | {mark} |")
    return "\n".join(out) + "\n"


def fmt_err(predicted: float, measured: float) -> str:
    return f"{error_pct(predicted, measured):+.1f} %"


# --------------------------------------------------------------------------------------------
# The engine (runs in its own process; torch is imported here only)
# --------------------------------------------------------------------------------------------


class Model:
    """Llama-shaped decoder with a static KV cache of `max_batch` × `max_len`. `forward`
    takes tokens [B, T] and their positions [B, T], writes their keys and values into the
    cache and returns the greedy next token at every position [B, T] (or the last, [B, 1]).
    Layers may sit on several devices (pipeline split); the cache sits beside its layer."""

    def __init__(
        self,
        shape: Shape,
        devices: Sequence[Any],
        max_batch: int,
        dtype: Any,
        seed: int,
        shared: Model | None = None,
        fp8: bool = False,
    ) -> None:
        import torch

        self.torch = torch
        self.shape = shape
        self.dtype = dtype
        self.fp8 = fp8
        self.pad_rows = False
        torch.manual_seed(seed)  # every device's generator
        s = shape
        per = math.ceil(s.layers / len(devices))
        self.layer_devices = [devices[min(i // per, len(devices) - 1)] for i in range(s.layers)]
        self.first, self.last = devices[0], devices[-1]

        def weight(rows: int, cols: int, device: Any) -> Any:
            return torch.randn(rows, cols, device=device, dtype=dtype).mul_(0.02)

        self.embed: Any
        self.norm: Any
        self.head: Any
        if shared is not None:
            self.embed, self.norm, self.head = shared.embed, shared.norm, shared.head
        else:
            self.embed = weight(s.vocab, s.hidden, self.first)
            self.norm = torch.ones(s.hidden, device=self.last, dtype=dtype)
            self.head = weight(s.vocab, s.hidden, self.last)
        self.layers: list[Any] = []
        qkv_rows = (s.heads + 2 * s.kv_heads) * s.head_dim
        for i, dev in enumerate(self.layer_devices):
            if shared is not None and not fp8:
                self.layers.append(shared.layers[i])
                continue
            src = shared.layers[i] if shared is not None else None
            layer = {
                "ln1": torch.ones(s.hidden, device=dev, dtype=dtype),
                "ln2": torch.ones(s.hidden, device=dev, dtype=dtype),
            }
            for name, rows, cols in (
                ("qkv", qkv_rows, s.hidden),
                ("o", s.hidden, s.heads * s.head_dim),
                ("gate_up", 2 * s.intermediate, s.hidden),
                ("down", s.hidden, s.intermediate),
            ):
                w = src[name] if src is not None else weight(rows, cols, dev)
                layer[name] = self._fp8(w) if fp8 else w
            self.layers.append(layer)
        self.k_cache = [
            torch.zeros(max_batch, s.max_len, s.kv_heads, s.head_dim, device=d, dtype=dtype)
            for d in self.layer_devices
        ]
        self.v_cache = [torch.zeros_like(k) for k in self.k_cache]
        half = s.head_dim // 2
        inv = 1.0 / (10000 ** (torch.arange(half, dtype=torch.float32) / half))
        angles = torch.outer(torch.arange(s.max_len, dtype=torch.float32), inv)
        self.cos = {d: angles.cos().to(d, dtype) for d in set(map(str, devices))}
        self.sin = {d: angles.sin().to(d, dtype) for d in set(map(str, devices))}
        self.arange = {d: torch.arange(s.max_len, device=d) for d in set(map(str, devices))}

    def _fp8(self, w: Any) -> tuple[Any, Any]:
        """Per-tensor FP8 (e4m3) weights and their scale."""
        torch = self.torch
        scale = (w.abs().amax().float() / 448.0).clamp(min=1e-12)
        return (w.float() / scale).to(torch.float8_e4m3fn), scale.reshape(())

    def _linear(self, x: Any, w: Any) -> Any:
        torch = self.torch
        if not self.fp8:
            return torch.nn.functional.linear(x, w)
        wq, scale = w
        lead = x.shape[:-1]
        a = x.reshape(-1, x.shape[-1])
        if a.is_cuda:
            # Static activation scale 1 (RMS-normed activations lie well inside e4m3's ±448).
            one = torch.ones((), device=a.device, dtype=torch.float32)
            m = a.shape[0]
            if self.pad_rows and m % 16:
                a = torch.nn.functional.pad(a, (0, 0, 0, 16 - m % 16))
            try:
                y = torch._scaled_mm(a.to(torch.float8_e4m3fn), wq.t(), one, scale, out_dtype=self.dtype)
            except RuntimeError:
                if self.pad_rows:
                    raise
                self.pad_rows = True  # some builds want rows in multiples of 16
                return self._linear(x, w)
            y = y[:m]
        else:  # CPU dry run: the same arithmetic, emulated
            y = (a.to(torch.float8_e4m3fn).float() @ (wq.float() * scale).t()).to(self.dtype)
        return y.reshape(*lead, -1)

    def _rope(self, x: Any, cos: Any, sin: Any) -> Any:
        torch = self.torch
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        c, s = cos[:, :, None, :], sin[:, :, None, :]
        return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)

    def forward(self, tokens: Any, positions: Any, last_only: bool = False) -> Any:
        torch = self.torch
        F = torch.nn.functional
        s = self.shape
        B, T = tokens.shape
        H, KVH, D = s.heads, s.kv_heads, s.head_dim
        G = H // KVH
        x = self.embed[tokens]
        dev = str(self.first)
        pos = positions
        rows = torch.arange(B, device=pos.device)[:, None].expand(B, T)
        cos, sin = self.cos[dev][pos], self.sin[dev][pos]
        mask = self._mask(pos, dev, B, T, G)
        for i, layer in enumerate(self.layers):
            d = str(self.layer_devices[i])
            if d != dev:
                dev = d
                x, pos = x.to(d), pos.to(d)
                rows = rows.to(d)
                cos, sin = self.cos[d][pos], self.sin[d][pos]
                mask = self._mask(pos, d, B, T, G)
            a = F.rms_norm(x, (s.hidden,), layer["ln1"], 1e-5)
            qkv = self._linear(a, layer["qkv"])
            q, k, v = qkv.split((H * D, KVH * D, KVH * D), dim=-1)
            q = self._rope(q.view(B, T, H, D), cos, sin)
            k = self._rope(k.view(B, T, KVH, D), cos, sin)
            kc, vc = self.k_cache[i], self.v_cache[i]
            kc[rows, pos] = k
            vc[rows, pos] = v.view(B, T, KVH, D)
            qg = q.view(B, T, KVH, G, D).permute(0, 2, 3, 1, 4).reshape(B, KVH, G * T, D)
            o = F.scaled_dot_product_attention(qg, kc[:B].transpose(1, 2), vc[:B].transpose(1, 2), mask)
            o = o.view(B, KVH, G, T, D).permute(0, 3, 1, 2, 4).reshape(B, T, H * D)
            x = x + self._linear(o, layer["o"])
            a = F.rms_norm(x, (s.hidden,), layer["ln2"], 1e-5)
            gate, up = self._linear(a, layer["gate_up"]).chunk(2, dim=-1)
            x = x + self._linear(F.silu(gate) * up, layer["down"])
        if str(self.last) != dev:
            x = x.to(self.last)
        if last_only:
            x = x[:, -1:]
        x = F.rms_norm(x, (s.hidden,), self.norm, 1e-5)
        return F.linear(x, self.head).argmax(dim=-1)

    def _mask(self, pos: Any, dev: str, B: int, T: int, G: int) -> Any:
        L = self.shape.max_len
        m = self.arange[dev].view(1, 1, L) <= pos.view(B, T, 1)
        return m[:, None, None].expand(B, 1, G, T, L).reshape(B, 1, G * T, L)


class Step:
    """A fixed-shape call replayed many times: a CUDA graph on one GPU, else plain calls.
    `tokens`/`positions` are its static inputs; with `advance`, each call feeds its output
    token back in and moves the positions on by one (a decode step)."""

    def __init__(self, model: Model, batch: int, width: int, advance: bool, graph: bool) -> None:
        torch = model.torch
        dev = model.first
        self.model = model
        self.tokens = torch.zeros(batch, width, dtype=torch.long, device=dev)
        self.positions = torch.arange(width, device=dev).repeat(batch, 1)
        self.advance = advance
        self.out: Any = None
        self.graph = None
        if graph:
            start = self.positions.clone()
            stream = torch.cuda.Stream(device=dev)
            stream.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._call()
            torch.cuda.current_stream(dev).wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._call()
            self.positions.copy_(start)

    def _call(self) -> None:
        self.out = self.model.forward(self.tokens, self.positions)
        if self.advance:
            self.tokens.copy_(self.out)
            self.positions.add_(1)

    def at(self, position: int) -> None:
        width = self.positions.shape[1]
        self.positions.copy_(
            self.model.torch.arange(position, position + width, device=self.positions.device).expand_as(
                self.positions
            )
        )

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self._call()


def sync(devices: Sequence[Any]) -> None:
    import torch

    for d in devices:
        if str(d).startswith("cuda"):
            torch.cuda.synchronize(d)


@dataclass
class Request:
    request_id: str
    arrival_ns: int
    arrival: float
    prompt: int
    output: int
    done: threading.Event = field(default_factory=threading.Event)


class Engine:
    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.torch = torch
        self.cuda = args.device != "cpu"
        if self.cuda:
            self.devices = [torch.device(f"cuda:{i}") for i in args.devices.split(",")]
        else:
            self.devices = [torch.device("cpu")]
        self.graphs = self.cuda and len(self.devices) == 1
        self.max_batch = max(GRAPH_BATCHES)
        self.shape = TINY if args.tiny else TARGET
        self.draft_shape = TINY_DRAFT if args.tiny else DRAFT
        dtype = torch.bfloat16
        t0 = time.perf_counter()
        self.model = Model(self.shape, self.devices, self.max_batch, dtype, seed=1)
        self.load_s = time.perf_counter() - t0
        self.decode = {b: Step(self.model, b, 1, True, self.graphs) for b in GRAPH_BATCHES}
        self.state = EngineState()
        self.queue: queue.Queue[Request] = queue.Queue()
        self.spans: queue.Queue[Timing] = queue.Queue()
        self.lock = threading.Lock()
        self.seq = 0
        self.rng = random.Random(7)

    # --- serving --------------------------------------------------------------------------

    def submit(self, prompt: int, output: int) -> Request:
        with self.lock:
            self.seq += 1
            rid = f"req-{self.seq}"
        req = Request(rid, time.time_ns(), time.perf_counter(), prompt, output)
        self.queue.put(req)
        return req

    def serve(self, stop: threading.Event) -> None:
        """Static batching: up to 8 waiting requests of one shape run prefill together, then
        decode together (a replayed graph per step) until the last token."""
        torch = self.torch
        pending: list[Request] = []
        while not stop.is_set() or pending or not self.queue.empty():
            while True:
                try:
                    pending.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self.state.waiting = len(pending)
            if not pending:
                time.sleep(0.0005)
                continue
            if len(pending) < 8 and time.perf_counter() - pending[-1].arrival < BATCH_WAIT_S:
                time.sleep(BATCH_WAIT_S)  # let requests arriving together form one batch
                continue
            shape = (pending[0].prompt, pending[0].output)
            batch = [r for r in pending if (r.prompt, r.output) == shape][:8]
            pending = [r for r in pending if r not in batch]
            n, (prompt, output) = len(batch), shape
            size = padded_batch(n)
            self.state.running, self.state.waiting = n, len(pending)
            self.state.kv_usage = n * (prompt + output) / (self.max_batch * self.shape.max_len)
            sync(self.devices)
            started = time.perf_counter()
            tokens = torch.randint(0, self.shape.vocab, (size, prompt), device=self.devices[0])
            positions = torch.arange(prompt, device=self.devices[0]).repeat(size, 1)
            first = self.model.forward(tokens, positions, last_only=True)
            sync(self.devices)
            first_token = time.perf_counter()
            step = self.decode[size]
            step.tokens.copy_(first)
            step.at(prompt)
            for _ in range(output - 1):
                step()
            sync(self.devices)
            ended = time.perf_counter()
            for r in batch:
                self.spans.put(
                    Timing(
                        r.request_id,
                        r.arrival_ns,
                        queue_s=started - r.arrival,
                        prefill_s=first_token - started,
                        decode_s=ended - first_token,
                        prompt_tokens=prompt,
                        output_tokens=output,
                    )
                )
                r.done.set()
            self.state.running, self.state.kv_usage = 0, 0.0
            self.state.requests += n
            self.state.prompt_tokens += n * prompt
            self.state.generation_tokens += n * output

    def drive(self, phases: Sequence[Phase], log: Callable[[dict[str, Any]], None]) -> None:
        """Run the load pattern; log each phase's wall-clock bounds (idle: from the end of
        the last request before it to the first request after it)."""
        last_done = time.time()
        for phase in phases:
            if phase.kind == "idle":
                start = last_done
                time.sleep(max(0.0, phase.seconds - (time.time() - start)))
                log({"phase": phase.name, "start": start, "end": time.time()})
                continue
            start = time.time()
            reqs: list[Request] = []
            if phase.kind == "closed":
                end = time.perf_counter() + phase.seconds

                def client(end: float = end, phase: Phase = phase, reqs: list[Request] = reqs) -> None:
                    while time.perf_counter() < end:
                        r = self.submit(phase.prompt, phase.output)
                        reqs.append(r)
                        r.done.wait()

                threads = [threading.Thread(target=client) for _ in range(phase.clients)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            else:
                for i in range(phase.bursts):
                    if i:
                        time.sleep(phase.every)
                    reqs += [self.submit(phase.prompt, phase.output) for _ in range(phase.clients)]
                for r in reqs:
                    r.done.wait()
            last_done = time.time()
            log({"phase": phase.name, "start": start, "end": last_done, "requests": len(reqs)})

    def export(self, relay_port: int, stop: threading.Event) -> None:
        """Send finished requests' spans to the collector's OTLP receiver once a second."""
        import httpx
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
        from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

        from collector.otlp import key_values, resource

        url = f"http://127.0.0.1:{relay_port}/v1/traces"
        while True:
            finished = stop.wait(1.0)
            batch: list[Timing] = []
            while True:
                try:
                    batch.append(self.spans.get_nowait())
                except queue.Empty:
                    break
            if batch:
                spans = [
                    Span(
                        trace_id=os.urandom(16),
                        span_id=os.urandom(8),
                        name="llm_request",
                        kind=Span.SPAN_KIND_SERVER,
                        start_time_unix_nano=t.arrival_ns,
                        end_time_unix_nano=t.end_ns,
                        attributes=key_values(span_attributes(t)),
                    )
                    for t in batch
                ]
                body = ExportTraceServiceRequest(
                    resource_spans=[
                        ResourceSpans(
                            resource=resource({"service.name": "vllm"}), scope_spans=[ScopeSpans(spans=spans)]
                        )
                    ]
                ).SerializeToString()
                httpx.post(
                    url, content=body, headers={"Content-Type": "application/x-protobuf"}, timeout=10
                ).raise_for_status()
            if finished:
                return

    # --- measurements -----------------------------------------------------------------------

    def timed(self, fn: Callable[[], None], seconds: float, per_call: int = 1) -> dict[str, float]:
        """Calls `fn` for about `seconds` (after a warm-up); wall bounds and seconds per call."""
        for _ in range(3):
            fn()
        sync(self.devices)
        t_probe = time.perf_counter()
        fn()
        sync(self.devices)
        one = max(time.perf_counter() - t_probe, 1e-6)
        n = max(5, int(seconds / one))
        start_wall = time.time()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync(self.devices)
        elapsed = time.perf_counter() - t0
        return {"start": start_wall, "end": time.time(), "calls": n, "s_per_call": elapsed / n / per_call}

    def block(self, step: Step, calls: int) -> Callable[[], None]:
        """`calls` replays of `step` from a context of max_len / 5 tokens (256), as one call."""
        ctx = self.shape.max_len // 5
        calls = min(calls, 3 * ctx)

        def fn() -> None:
            step.at(ctx)
            for _ in range(calls):
                step()

        return fn

    def measure(self, seconds: float, log: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        torch = self.torch
        out: dict[str, Any] = {"load_s": self.load_s}
        # Decode per step at 1–16 requests in flight.
        sweep = {}
        for b, step in self.decode.items():
            sweep[b] = self.timed(self.block(step, 32), seconds, per_call=32)
            log({"measure": f"decode_b{b}", **sweep[b]})
        out["decode"] = sweep
        # Batch 1 as an engine runs it: the sampled token is read back after every step.
        step1 = self.decode[1]

        ctx = self.shape.max_len // 5

        def synced() -> None:
            step1.at(ctx)
            for _ in range(32):
                step1()
                step1.out.item()

        out["decode_b1_synced"] = self.timed(synced, seconds / 2, per_call=32)
        # FP8 weights, same layers.
        try:
            fp8 = Model(self.shape, self.devices, 1, torch.bfloat16, seed=1, shared=self.model, fp8=True)
            step8 = Step(fp8, 1, 1, True, self.graphs)
            out["fp8_decode_b1"] = self.timed(self.block(step8, 32), seconds, per_call=32)
            log({"measure": "fp8_decode_b1", **out["fp8_decode_b1"]})
            del step8, fp8
        except Exception as exc:  # no FP8 kernels on this GPU or build: say so, keep the rest
            out["fp8_error"] = f"{type(exc).__name__}: {exc}"
            log({"measure": "fp8_decode_b1", "error": out["fp8_error"]})
        # Speculative decoding: draft steps, a γ+1-token verification, and the loop.
        gamma = 4
        draft = Model(self.draft_shape, self.devices[:1], 1, torch.bfloat16, seed=2)
        dstep = Step(draft, 1, 1, True, self.graphs)
        verify = Step(self.model, 1, gamma + 1, False, self.graphs)
        d_calls, v_calls = min(256, 3 * ctx), min(32, 3 * ctx // (gamma + 1))
        out["draft_step"] = self.timed(self.block(dstep, d_calls), seconds / 2, per_call=d_calls)
        out["verify_step"] = self.timed(self.block(verify, v_calls), seconds / 2, per_call=v_calls)
        log({"measure": "draft_step", **out["draft_step"]})
        log({"measure": "verify_step", **out["verify_step"]})
        spec = {}
        for alpha in (0.6, 0.8):
            rng = random.Random(11)
            tokens = rounds = 0
            pos = ctx
            sync(self.devices)
            start_wall, t0 = time.time(), time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                dstep.at(pos)
                for _ in range(gamma):
                    dstep()
                verify.tokens[:, 1:].copy_(dstep.tokens.expand(1, gamma))
                verify.at(pos)
                verify()
                n = accepted_drafts((rng.random() for _ in range(gamma)), alpha, gamma)
                verify.out[0, n].item()  # the bonus token, read back as an engine must
                tokens += n + 1
                rounds += 1
                pos = ctx + (pos - ctx + n + 1) % (2 * ctx)
            elapsed = time.perf_counter() - t0
            spec[str(alpha)] = {
                "start": start_wall,
                "end": time.time(),
                "tokens": tokens,
                "rounds": rounds,
                "s_per_token": elapsed / tokens,
                "gamma": gamma,
            }
            log({"measure": f"spec_{alpha}", **spec[str(alpha)]})
        out["spec"] = spec
        # Copy bandwidth (bytes read + written), the ceiling the floor should be held against.
        if self.cuda:
            n = 1 << 30
            a = torch.empty(n, dtype=torch.uint8, device=self.devices[0])
            b = torch.empty_like(a)
            res = self.timed(lambda: b.copy_(a), 1.0)
            out["copy_gbs"] = 2 * n / res["s_per_call"] / 1e9
            del a, b
        return out


def engine_main(args: argparse.Namespace) -> int:
    """The engine process: load the model, serve /metrics, wait for GO, run the load and the
    measurements, print one JSON line per event and the results last."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    def log(event: dict[str, Any]) -> None:
        print("EVENT " + json.dumps(event), flush=True)

    engine = Engine(args)
    if args.selftest:  # the GPU paths without server or collector: one batch, short measurements
        stop = threading.Event()
        stop.set()
        reqs = [engine.submit(512 // 8 if args.tiny else 512, 16) for _ in range(8)]
        engine.serve(stop)
        log({"selftest_served": len(reqs), "spans": engine.spans.qsize(), "load_s": engine.load_s})
        print("RESULT " + json.dumps(engine.measure(args.measure_s, log)), flush=True)
        return 0
    info: dict[str, Any] = {
        "pid": os.getpid(),
        "params": engine.shape.params(),
        "decode_read_params": engine.shape.decode_read_params(),
        "shape": asdict(engine.shape),
        "draft_shape": asdict(engine.draft_shape),
        "draft_params": engine.draft_shape.params(),
        "devices": [str(d) for d in engine.devices],
        "cuda_graphs": engine.graphs,
    }
    if engine.cuda:
        torch = engine.torch
        info["gpu"] = [torch.cuda.get_device_name(d) for d in engine.devices]
        info["torch"] = torch.__version__

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = metrics_text(engine.state).encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    info["metrics_port"] = http.server_address[1]
    print("READY " + json.dumps(info), flush=True)
    line = sys.stdin.readline().split()
    if not line or line[0] != "GO":
        return 2
    relay_port = int(line[1])
    stop = threading.Event()
    exporter = threading.Thread(target=engine.export, args=(relay_port, stop))
    exporter.start()
    server = threading.Thread(target=engine.serve, args=(stop,))
    server.start()
    phases = schedule(args.idle, scale=args.scale, token_div=8 if args.tiny else 1)
    if args.short:  # busy, idle, and a little load to close the idle phase
        phases = [*phases[:2], Phase("tail", "closed", 5, clients=8, prompt=phases[0].prompt, output=16)]
    engine.drive(phases, log)
    stop.set()
    server.join()
    exporter.join()
    result: dict[str, Any] = {}
    if not args.short:
        result = engine.measure(args.measure_s, log)
    time.sleep(2)  # the last samples of the measurements reach the collector
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# The orchestrator: server, engine, collector; then the store and the findings
# --------------------------------------------------------------------------------------------


SAMPLES_SQL = """
SELECT gpu_uuid, any(gpu_name) AS name, toFloat64(toUnixTimestamp64Milli(time)) / 1000 AS t,
       any(util_gpu_pct) AS util, any(sm_activity_pct) AS sm, any(dram_bw_pct) AS dram,
       any(mem_used_bytes) AS mem, any(proc_pids) AS pids, any(deployment) AS deployment
FROM gpu_samples
WHERE time >= fromUnixTimestamp64Milli({since:Int64}) AND time < fromUnixTimestamp64Milli({until:Int64})
GROUP BY gpu_uuid, time ORDER BY gpu_uuid, time
"""
REQUESTS_SQL = """
SELECT request_id, gpu_uuids, queue_s, prefill_s, decode_s, e2e_s, output_tokens
FROM requests FINAL WHERE deployment = {deployment:String}
"""


def read_store(data_dir: Path, since: float, until: float, deployment: str) -> dict[str, Any]:
    from api.settings import Settings
    from api.store import Query, open_store

    store = open_store(Settings(data_dir=data_dir))
    try:
        samples = store.rows(
            Query("e2e.samples", SAMPLES_SQL), since=int(since * 1000), until=int(until * 1000)
        )
        reqs = store.rows(Query("e2e.requests", REQUESTS_SQL), deployment=deployment)
    finally:
        store.close()
    return {"samples": samples, "requests": reqs}


def run_findings_over(
    data_dir: Path, since: float, until: float, profile: dict[str, Any], pad: bool = True
) -> list[dict]:
    """Every finding over [since, until) (+ a minute with `pad`), read from the store."""
    from api.findings.engine import run_findings
    from api.settings import Settings
    from api.store import open_store
    from api.timewindow import Window

    settings = Settings(data_dir=data_dir, findings={"deployments": profile})
    store = open_store(settings)
    try:
        window = Window(
            datetime.fromtimestamp(since, tz=UTC),
            datetime.fromtimestamp(until, tz=UTC) + timedelta(minutes=1 if pad else 0),
        )
        return [f.to_dict() for f in run_findings(store, settings, window)]
    finally:
        store.close()


def phase_stats(samples: Sequence[dict[str, Any]], start: float, end: float) -> dict[str, dict[str, Any]]:
    """Per GPU, the mean utilisation, SM activity and DRAM bandwidth of samples in [start, end)
    (first and last second left out: NVML averages over the past sample period)."""
    out: dict[str, dict[str, Any]] = {}
    for uuid in sorted({s["gpu_uuid"] for s in samples}):
        rows = [s for s in samples if s["gpu_uuid"] == uuid and start + 1 <= s["t"] < end - 0.5]

        def mean(key: str, rows: list[dict[str, Any]] = rows) -> float | None:
            vals = [r[key] for r in rows if r[key] is not None]
            return sum(vals) / len(vals) if vals else None

        out[uuid] = {
            "samples": len(rows),
            "util": mean("util"),
            "sm": mean("sm"),
            "dram": mean("dram"),
            "mem_gib": max((r["mem"] or 0 for r in rows), default=0) / 2**30,
            "pids": sorted({p for r in rows for p in r["pids"]}),
        }
    return out


def evaluate(run: dict[str, Any]) -> list[Row]:
    """Checks and predictions against measurements, from the collected run (pure)."""
    from api.findings.quantisation import decode_floor_s
    from api.findings.speculative import speedup

    info, events, result, store = run["engine"], run["events"], run["result"], run["store"]
    findings = run["findings"]
    deployment = run.get("deployment", DEPLOYMENT)
    samples = store["samples"]
    gpu_names = info.get("gpu") or ["cpu"]
    hw = gpu_names[0].replace("NVIDIA ", "")
    engine_pid = info["pid"]
    uuids = sorted({s["gpu_uuid"] for s in samples})
    engine_gpus = sorted({s["gpu_uuid"] for s in samples if engine_pid in s["pids"]})
    rows: list[Row] = []
    phases = {e["phase"]: e for e in events if "phase" in e}
    interval = run["interval_s"]

    if "idle" in phases:
        idle = phases["idle"]
        true_idle = idle["end"] - idle["start"]
        for uuid in engine_gpus:
            window = [
                (s["t"], s["sm"] if s["sm"] is not None else s["util"])
                for s in samples
                if s["gpu_uuid"] == uuid and idle["start"] - 10 <= s["t"] < idle["end"] + 10
            ]
            seen = idle_run_seconds(window, interval)
            rows.append(
                Row(
                    f"idle phase seen in 1 s samples ({uuid[-8:]})",
                    hw,
                    f"{true_idle:.1f} s",
                    f"{seen:.1f} s",
                    f"{seen - true_idle:+.1f} s",
                    abs(seen - true_idle) <= interval + 0.01,
                )
            )
        expect_min = whole_minutes(
            datetime.fromtimestamp(idle["start"], tz=UTC), datetime.fromtimestamp(idle["end"], tz=UTC)
        )
        held = [f for f in findings if f["kind"] == "idle_held" and f["scope"]["id"] == deployment]
        got = {
            g["gpu_uuid"]: round(g["idle_gpu_hours"] * 60)
            for f in held
            for g in f["evidence"].get("by_gpu", [])
        }
        for uuid in engine_gpus:
            rows.append(
                Row(
                    f"idle_held finding, whole idle minutes ({uuid[-8:]})",
                    hw,
                    f"{expect_min} min",
                    f"{got.get(uuid, 0)} min",
                    f"{got.get(uuid, 0) - expect_min:+d} min",
                    abs(got.get(uuid, 0) - expect_min) <= 1,
                )
            )

    reqs = store["requests"]
    if reqs:
        seen_gpus = sorted({u for r in reqs for u in r["gpu_uuids"]})
        rows.append(
            Row(
                "requests attributed to the engine's GPUs",
                f"{len(uuids)} GPU(s)",
                ", ".join(u[-8:] for u in engine_gpus) or "-",
                ", ".join(u[-8:] for u in seen_gpus) or "-",
                "",
                seen_gpus == engine_gpus,
            )
        )
    if "busy" in phases and len(uuids) > 1:
        busy = phase_stats(samples, phases["busy"]["start"], phases["busy"]["end"])
        for uuid, st in busy.items():
            mine = uuid in engine_gpus
            rows.append(
                Row(
                    f"busy phase on {uuid[-8:]}: util / SM / pid",
                    hw,
                    "busy, engine pid" if mine else "idle, no pid",
                    f"{st['util'] or 0:.0f} % / {st['sm'] or 0:.0f} % / "
                    f"{'pid' if engine_pid in st['pids'] else 'no pid'}",
                    "",
                    ((st["util"] or 0) > 20 and engine_pid in st["pids"])
                    if mine
                    else ((st["util"] or 0) < IDLE_PCT and engine_pid not in st["pids"]),
                )
            )

    if "decode_heavy" in phases:
        for label, found in (
            ("whole run", findings),
            ("decode-heavy minutes only", run.get("findings_decode_heavy")),
        ):
            if found is None:
                continue
            spec_f = [f for f in found if f["kind"] == "speculative_candidate"]
            others = sorted({f["kind"] for f in found if f["scope"]["id"] == deployment})
            rows.append(
                Row(
                    f"speculative_candidate flagged ({label})",
                    hw,
                    "flagged",
                    f"flagged, {spec_f[0]['evidence'].get('concurrency')} in flight"
                    if spec_f
                    else f"not flagged ({', '.join(others)})",
                    "",
                    bool(spec_f),
                )
            )

    if not result:
        return rows
    read_params = info["decode_read_params"]
    all_params = info["params"]
    spec = _gpu_spec(hw)
    decode = {int(b): v for b, v in result["decode"].items()}
    tpot1 = decode[1]["s_per_call"]
    if spec is not None:
        floor = decode_floor_s(all_params / 1e9, 16, 1, spec)
        rows.append(
            Row(
                "decode ms/token at batch 1 vs the finding's floor (params × 2 B / catalogue BW)",
                hw,
                f"≥ {floor * 1e3:.2f} ms",
                f"{tpot1 * 1e3:.2f} ms ({tpot1 / floor:.2f}× floor)",
                fmt_err(floor, tpot1),
                tpot1 >= floor * 0.98,
            )
        )
        if "copy_gbs" in result:
            bw = result["copy_gbs"] * 1e9
            floor_read = read_params * 2 / bw
            rows.append(
                Row(
                    "same, bytes read per step / measured copy BW",
                    hw,
                    f"{floor_read * 1e3:.2f} ms",
                    f"{tpot1 * 1e3:.2f} ms",
                    fmt_err(floor_read, tpot1),
                    None,
                )
            )
        if "fp8_decode_b1" in result:
            fp8 = result["fp8_decode_b1"]["s_per_call"]
            pred = quant_prediction(tpot1, floor, 16, 8)
            rows.append(
                Row(
                    "FP8 weights: decode ms/token at batch 1 (tpot − floor/2)",
                    hw,
                    f"{pred * 1e3:.2f} ms",
                    f"{fp8 * 1e3:.2f} ms",
                    fmt_err(pred, fp8),
                    abs(error_pct(pred, fp8)) <= 15,
                )
            )
    # Concurrency: throughput per replica against the utilisation-based demand.
    stats = {
        b: phase_stats(samples, v["start"], v["end"]).get(engine_gpus[0], {}) if engine_gpus else {}
        for b, v in decode.items()
    }
    tok1 = 1 / tpot1
    busy_key = "sm" if stats[1].get("sm") is not None else "util"
    busy1 = stats[1].get(busy_key) or 0
    best_b = max(decode)
    tokb = best_b / decode[best_b]["s_per_call"]
    rows.append(
        Row(
            f"tokens/s per replica at {best_b} in flight, from batch 1's {busy_key} ({busy1:.0f} %)",
            hw,
            f"{capacity_from_util(tok1, busy1):.0f} tok/s",
            f"{tokb:.0f} tok/s",
            fmt_err(capacity_from_util(tok1, busy1), tokb),
            None,
        )
    )
    # Speculative decoding.
    c = result["draft_step"]["s_per_call"] / tpot1
    v = result["verify_step"]["s_per_call"] / tpot1
    # Both loops read each step's token back (as an engine must), so compare like with like.
    plain = result.get("decode_b1_synced", decode[1])["s_per_call"]
    for alpha, s in result["spec"].items():
        a = float(alpha)
        gamma = s["gamma"]
        measured = plain / s["s_per_token"]
        for label, cc in (("c = 0.05 (setting)", 0.05), (f"measured c = {c:.3f}", c)):
            pred = speedup(a, gamma, cc)
            rows.append(
                Row(
                    f"speculative S, α = {a}, γ = {gamma}, {label}",
                    hw,
                    f"{pred:.2f}×",
                    f"{measured:.2f}×",
                    fmt_err(pred, measured),
                    abs(error_pct(pred, measured)) <= 15,
                )
            )
        pred_v = speedup_with_verify(a, gamma, c, v)
        rows.append(
            Row(
                f"speculative S, α = {a}: measured c and verify cost ({v:.2f} steps)",
                hw,
                f"{pred_v:.2f}×",
                f"{measured:.2f}×",
                fmt_err(pred_v, measured),
                abs(error_pct(pred_v, measured)) <= 15,
            )
        )
        rows.append(
            Row(
                f"tokens per round, α = {a}",
                "-",
                f"{expected_tokens_per_round(a, gamma):.3f}",
                f"{s['tokens'] / s['rounds']:.3f}",
                fmt_err(expected_tokens_per_round(a, gamma), s["tokens"] / s["rounds"]),
                None,
            )
        )
    return rows


def speedup_with_verify(alpha: float, gamma: int, c: float, v: float) -> float:
    """Leviathan's S with the verification pass costing `v` target steps instead of 1:
    (1 − α^(γ+1)) / ((1 − α)(γ·c + v))."""
    from api.findings.speculative import speedup

    return speedup(alpha, gamma, c) * (gamma * c + 1) / (gamma * c + v)


def _gpu_spec(name: str) -> Any:
    from api.findings.catalogue import lookup

    match = lookup(name)
    return match.spec if match else None


def orchestrate(args: argparse.Namespace) -> int:
    import httpx

    work = Path(tempfile.mkdtemp(prefix="inferwatch-e2e-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERWATCH_")}
    server_port, relay_port, collector_port = free_port(), free_port(), free_port()
    server_url = f"http://127.0.0.1:{server_port}"
    deployment = DEPLOYMENT if not args.short else DEPLOYMENT + "-split"
    procs: list[subprocess.Popen[Any]] = []
    run: dict[str, Any] = {
        "args": vars(args),
        "interval_s": args.interval,
        "events": [],
        "deployment": deployment,
    }
    t_start = time.time()
    try:
        server = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(server_port), "--data-dir",
             str(work / "data"), "--log-level", "WARNING"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        procs.append(server)
        engine_cmd = [sys.executable, str(Path(__file__).resolve()), "engine", "--device", args.device,
                      "--devices", args.devices, "--idle", str(args.idle), "--scale", str(args.scale),
                      "--measure-s", str(args.measure_s)]  # fmt: skip
        engine_cmd += ["--tiny"] if args.tiny else []
        engine_cmd += ["--short"] if args.short else []
        engine = subprocess.Popen(engine_cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        procs.append(engine)
        assert engine.stdout is not None and engine.stdin is not None
        ready = engine.stdout.readline()
        if not ready.startswith("READY "):
            raise RuntimeError(f"the engine did not start: {ready!r}")
        run["engine"] = json.loads(ready[6:])
        print(f"engine: {run['engine']}", flush=True)
        wait_http(f"{server_url}/healthz", "the inferwatch server", 240, server)
        collector = subprocess.Popen(
            [sys.executable, "-m", "collector", "--server", server_url, "--cluster", "device",
             "--deployment", deployment, "--model", MODEL_NAME, "--otlp-port", str(relay_port),
             "--metrics-port", str(collector_port), "--spool-dir", str(work / "spool"),
             "--engine-pid", str(run["engine"]["pid"]), "--engine-metrics",
             f"http://127.0.0.1:{run['engine']['metrics_port']}/metrics", "--scrape-interval", "1s",
             "--interval", f"{args.interval}s", "--flush-interval", "1s",
             "--process-interval", "2s"] + (["--no-gpu"] if args.device == "cpu" else []),
            cwd=ROOT, env=env,
        )  # fmt: skip
        procs.append(collector)
        wait_http(f"http://127.0.0.1:{collector_port}/metrics", "the collector", 60, collector)
        time.sleep(3)  # a few samples of the loaded-but-waiting engine
        t_go = time.time()
        engine.stdin.write(f"GO {relay_port}\n")
        engine.stdin.flush()
        for line in engine.stdout:
            if line.startswith("EVENT "):
                event = json.loads(line[6:])
                run["events"].append(event)
                print(f"  {event}", flush=True)
            elif line.startswith("RESULT "):
                run["result"] = json.loads(line[7:])
        if engine.wait(timeout=120) != 0:
            raise RuntimeError(f"the engine exited with {engine.returncode}")
        time.sleep(3)
        run["collector_counters"] = {
            ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1])
            for ln in httpx.get(f"http://127.0.0.1:{collector_port}/metrics").text.splitlines()
            if ln.startswith("inferwatch_collector_") and "_total" in ln
        }
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=60)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
    t_end = time.time()
    run["window"] = [t_go, t_end]
    run["store"] = read_store(work / "data", t_start, t_end + 60, deployment)
    profile = {
        deployment: {
            "params_b": run["engine"]["params"] / 1e9,
            "weight_bits": 16,
            "gpus_per_replica": len(run["engine"]["devices"]),
        }
    }
    run["findings"] = run_findings_over(work / "data", t_start, t_end, profile)
    heavy = [e for e in run["events"] if e.get("phase") == "decode_heavy"]
    if heavy:
        first = math.ceil(heavy[0]["start"] / 60) * 60  # whole minutes of decode-heavy traffic only
        last = math.floor(heavy[0]["end"] / 60) * 60
        if last > first:
            run["findings_decode_heavy"] = run_findings_over(work / "data", first, last, profile, pad=False)
            run["decode_heavy_window"] = [first, last]
    run.setdefault("result", {})
    rows = evaluate(run)
    run["rows"] = [asdict(r) for r in rows]
    print()
    for f in run["findings"]:
        print(f"finding [{f['kind']}] {f['title']}")
    print()
    print(results_table(rows))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        name = "e2e-split.json" if args.short else "e2e.json"
        (args.out / name).write_text(json.dumps(run, indent=1, default=str) + "\n")
        (args.out / name.replace(".json", ".md")).write_text(results_table(rows))
    ok = all(r.ok is not False for r in rows)
    print("E2E OK" if ok else "E2E: SOME CHECKS OFF")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("role", nargs="?", default="run", choices=("run", "engine"), help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--devices", default="0", help="CUDA device indices, comma-separated (0,1: split)")
    parser.add_argument("--idle", type=float, default=150.0, help="seconds of the idle phase")
    parser.add_argument("--scale", type=float, default=1.0, help="shorten the loaded phases (dry run)")
    parser.add_argument("--measure-s", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--interval", type=float, default=1.0, help="collector sampling interval, s")
    parser.add_argument("--tiny", action="store_true", help="a toy model (CPU dry run)")
    parser.add_argument("--short", action="store_true", help="busy then idle only, no measurements")
    parser.add_argument("--selftest", action="store_true", help="engine only: one batch, short measurements")
    parser.add_argument("--out", type=Path, help="write the run as JSON and the table as Markdown here")
    args = parser.parse_args(argv)
    if args.role == "engine":
        return engine_main(args)
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
