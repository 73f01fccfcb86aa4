"""From per-instance segments of engine metrics (`findings.engine_hours`: one per hour;
`findings.engine_minutes`: one per minute) to `EngineStats` per deployment. Pure,
vectorised with numpy.

Gauges: the mean over every scrape and the highest value. Counters: the increase, summed
over instances. Within a segment a counter rises from its first to its last value, unless
it fell below its first value (it was reset): then it rose to its highest, restarted, and
rose to its last (one reset per segment is assumed). Between segments it rises by the
difference, or, after a reset, by the new value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from api.findings.columns import Labels, Segments, key, lengths, numbers, popcount
from api.findings.inputs import EngineStats, MetricSummary

Key = tuple[str, str]  # (cluster, deployment)


def _first_of_runs(runs: Segments, at: np.ndarray, value: np.ndarray, *, last: bool) -> np.ndarray:
    """Per run, the value at its earliest `at` (lowest value on ties), or at its latest
    (highest value on ties) when `last`."""
    sign = -1.0 if last else 1.0
    when = runs.min(sign * at)
    candidate = np.where(sign * at == when[runs.ids], sign * value, np.inf)
    return sign * runs.min(candidate)


def engine_stats(tables: Sequence[pa.Table]) -> dict[Key, EngineStats]:
    """Per (cluster, deployment), each metric's figures over its instances."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return {}
    labels = [Labels.of(tables, c) for c in ("cluster", "deployment", "metric", "host", "instance")]
    _, series_of_row = np.unique(key(*labels), return_inverse=True)
    series = np.repeat(series_of_row, lengths(tables, "starts"))
    start = numbers(tables, "starts", np.int64)
    order = np.lexsort((start, series))
    runs = Segments.of(series[order], start[order])

    def column(name: str, dtype: type = np.float64) -> np.ndarray:
        return numbers(tables, name, dtype)[order]

    minutes = runs.any_bits(column("minute_masks", np.uint64))
    saturated = runs.any_bits(column("saturated_masks", np.uint64))
    lowest, highest = runs.min(column("lows")), runs.max(column("highs"))
    first = _first_of_runs(runs, column("first_ats"), column("first_values"), last=False)
    last = _first_of_runs(runs, column("last_ats"), column("last_values"), last=True)
    series = series[order][runs.starts]

    within = np.where(lowest < first, highest - first + last, last - first)
    between = np.where(first[1:] >= last[:-1], first[1:] - last[:-1], first[1:])
    increase = within.copy()
    increase[1:] += np.where(series[1:] == series[:-1], between, 0.0)

    count = int(series_of_row.max()) + 1
    per_series = {
        "increase": np.bincount(series, weights=increase, minlength=count),
        "minutes": np.bincount(series, weights=popcount(minutes), minlength=count),
        "saturated": np.bincount(series, weights=popcount(saturated), minlength=count),
        "highest": np.full(count, -np.inf),
        "total": np.bincount(
            series_of_row, weights=numbers(tables, "value_total", np.float64), minlength=count
        ),
        "samples": np.bincount(
            series_of_row, weights=numbers(tables, "value_samples", np.float64), minlength=count
        ),
    }
    np.maximum.at(per_series["highest"], series, highest)
    row_of_series = np.zeros(count, dtype=np.int64)
    row_of_series[series_of_row] = np.arange(len(series_of_row))

    acc: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, -np.inf, 0.0, 0.0, 0.0, 0])
    cluster, deployment, metric = labels[0], labels[1], labels[2]
    for i, row in enumerate(row_of_series.tolist()):
        a = acc[(cluster.text(row), deployment.text(row), metric.text(row))]
        a[0] += per_series["total"][i]
        a[1] += per_series["samples"][i]
        a[2] = max(a[2], per_series["highest"][i])
        a[3] += per_series["increase"][i]
        a[4] += per_series["minutes"][i]
        a[5] += per_series["saturated"][i]
        a[6] += 1
    out: dict[Key, dict[str, MetricSummary]] = defaultdict(dict)
    for (c, d, m), (total, samples, highest_, up, mins, sat, instances) in acc.items():
        out[(c, d)][m] = MetricSummary(
            mean=float(total / samples) if samples else None,
            max=float(highest_) if np.isfinite(highest_) else None,
            increase=float(up),
            minutes=int(mins),
            saturated=int(sat),
            instances=int(instances),
        )
    return {k: EngineStats(metrics) for k, metrics in out.items()}
