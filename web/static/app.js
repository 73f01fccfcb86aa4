// inferwatch pages: theme toggle and the charts, drawn with plotly.js from the page's own
// context (the same object its .json twin serves). No inline scripts; no network calls.
(function () {
  "use strict";
  const root = document.documentElement;
  const stored = localStorage.getItem("iw-theme");
  if (stored === "light" || stored === "dark") root.dataset.theme = stored;

  function css(name) { return getComputedStyle(root).getPropertyValue(name).trim(); }
  function palette() { return [1, 2, 3, 4, 5].map((i) => css("--chart-" + i)); }
  function layout(extra) {
    const text = css("--text"), muted = css("--muted"), line = css("--line");
    const base = {
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: getComputedStyle(document.body).fontFamily, size: 12, color: text },
      margin: { l: 56, r: 16, t: 8, b: 36 }, hovermode: "x unified", colorway: palette(),
      xaxis: { gridcolor: line, linecolor: line, zerolinecolor: line, tickfont: { color: muted } },
      yaxis: { gridcolor: line, linecolor: line, zerolinecolor: line, tickfont: { color: muted }, rangemode: "tozero" },
      legend: { orientation: "h", y: -0.18, font: { color: muted } },
      hoverlabel: { bgcolor: css("--panel"), bordercolor: line, font: { color: text } },
    };
    return deepMerge(base, extra || {});
  }
  function deepMerge(a, b) {
    const out = Array.isArray(a) ? a.slice() : Object.assign({}, a);
    for (const k of Object.keys(b)) {
      out[k] = b[k] && typeof b[k] === "object" && !Array.isArray(b[k]) && a[k] ? deepMerge(a[k], b[k]) : b[k];
    }
    return out;
  }
  const config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
  const drawn = [];

  function line(name, x, y, extra) {
    return Object.assign({ type: "scatter", mode: "lines", name: name, x: x, y: y, connectgaps: false,
      line: { width: 2 }, hovertemplate: "%{y:.3~f}" }, extra || {});
  }

  function draw(id, traces, lay) {
    const el = document.getElementById(id);
    if (!el || !window.Plotly) return;
    const entry = { el: el, traces: traces, lay: lay };
    drawn.push(entry);
    Plotly.newPlot(el, traces, layout(lay), config);
    el.dataset.rendered = "1";
  }
  function redrawAll() {
    for (const d of drawn) Plotly.react(d.el, d.traces, layout(d.lay), config);
  }

  // --- per-page charts: name → function(context) ----------------------------------------
  const pages = {
    overview(c) {
      const t = c.trend;
      draw("chart-trend", [
        { type: "bar", name: "GPU spend ($/day)", x: t.days, y: t.cost_usd, hovertemplate: "$%{y:,.0f}" },
        { type: "bar", name: "of which idle ($/day)", x: t.days, y: t.idle_cost_usd, hovertemplate: "$%{y:,.0f}" },
      ], { barmode: "overlay", yaxis: { tickprefix: "$", title: { text: "dollars per day" } } });
      if (c.waste.length) {
        draw("chart-waste", [{ type: "bar", orientation: "h", x: c.waste.map((w) => w.weekly_usd).reverse(),
          y: c.waste.map((w) => w.label).reverse(), hovertemplate: "$%{x:,.0f}/week<extra></extra>",
          marker: { color: css("--bad") } }], { hovermode: "closest", margin: { l: 210 },
          xaxis: { tickprefix: "$", title: { text: "dollars per week" } } });
      }
    },
    fleet(c) {
      const u = c.fleet.utilisation;
      draw("chart-util", [
        line("90th percentile GPU", u.times, u.p90_pct, { line: { width: 0 }, showlegend: false, hovertemplate: "p90 %{y:.0f} %" }),
        line("10th–90th percentile of GPUs", u.times, u.p10_pct, { fill: "tonexty", line: { width: 0 },
          fillcolor: "rgba(127,127,127,0.18)", hovertemplate: "p10 %{y:.0f} %" }),
        line("fleet mean", u.times, u.mean_pct, { hovertemplate: "mean %{y:.1f} %" }),
      ], { yaxis: { range: [0, 100], ticksuffix: " %", title: { text: "utilisation" } } });
      draw("chart-gpus", [{ type: "heatmap", x: u.times, y: u.gpus, z: u.by_gpu, zmin: 0, zmax: 100,
        colorscale: "Viridis", colorbar: { ticksuffix: " %", thickness: 10 }, hoverongaps: false,
        hovertemplate: "%{y}<br>%{x}<br>%{z:.0f} % utilisation<extra></extra>" }],
        { hovermode: "closest", margin: { l: 120 }, yaxis: { autorange: "reversed", showgrid: false } });
      idle("chart-idle", c.fleet.idle_pattern);
    },
    gpu(c) {
      const s = c.detail.series, t = s.map((p) => p.time);
      draw("chart-gpu-util", [line("utilisation (%)", t, s.map((p) => p.util_mean_pct)),
        line("requests in flight", t, s.map((p) => p.in_flight_mean), { yaxis: "y2" })],
        { yaxis: { range: [0, 100], ticksuffix: " %" }, yaxis2: { overlaying: "y", side: "right", rangemode: "tozero", showgrid: false } });
      draw("chart-gpu-power", [line("power (W)", t, s.map((p) => p.power_mean_w)),
        line("memory used (GiB)", t, s.map((p) => p.mem_used_max_bytes == null ? null : p.mem_used_max_bytes / 2 ** 30), { yaxis: "y2" })],
        { yaxis: { ticksuffix: " W" }, yaxis2: { overlaying: "y", side: "right", rangemode: "tozero", ticksuffix: " GiB", showgrid: false } });
      idle("chart-idle", c.detail.idle_pattern);
    },
    deployments(c) {
      const d = c.deployments.filter((x) => x.requests > 0);
      if (!d.length) return;
      const names = d.map((x) => x.deployment);
      draw("chart-latency", [
        { type: "bar", name: "TTFT p95 (s)", x: names, y: d.map((x) => x.ttft_s.p95) },
        { type: "bar", name: "end-to-end p95 (s)", x: names, y: d.map((x) => x.e2e_s.p95) },
      ], { hovermode: "closest", yaxis: { type: "log", ticksuffix: " s", title: { text: "log scale" } } });
      draw("chart-split", [
        { type: "bar", name: "prefill (s per request)", x: names, y: d.map((x) => x.prefill_s_mean) },
        { type: "bar", name: "decode (s per request)", x: names, y: d.map((x) => x.decode_s_mean) },
      ], { barmode: "stack", hovermode: "closest", yaxis: { ticksuffix: " s" }, legend: { traceorder: "normal" } });
    },
    deployment(c) {
      const s = c.detail.series, t = s.times;
      draw("chart-ttft", [line("TTFT p50", t, s.ttft_p50_s), line("TTFT p95", t, s.ttft_p95_s),
        line("queue p95", t, s.queue_p95_s, { line: { dash: "dot", width: 2 } })], { yaxis: { ticksuffix: " s" } });
      draw("chart-itl", [line("inter-token p50", t, s.itl_p50_s), line("inter-token p95", t, s.itl_p95_s)],
        { yaxis: { ticksuffix: " s" } });
      draw("chart-e2e", [line("end-to-end p50", t, s.e2e_p50_s), line("end-to-end p95", t, s.e2e_p95_s)],
        { yaxis: { ticksuffix: " s" } });
      draw("chart-phases", [
        { type: "bar", name: "prefill (s per request)", x: t, y: s.prefill_s_mean },
        { type: "bar", name: "decode (s per request)", x: t, y: s.decode_s_mean },
      ], { barmode: "stack", yaxis: { ticksuffix: " s" } });
      draw("chart-load", [line("requests/s", t, s.requests_per_s), line("in flight (Little's law)", t, s.concurrency_mean),
        line("engine: running", t, s.engine_running), line("engine: waiting", t, s.engine_waiting)], {});
      draw("chart-kv", [line("KV cache, mean of instances", t, s.kv_cache_mean.map((v) => v == null ? null : v * 100)),
        line("KV cache, fullest instance", t, s.kv_cache_max.map((v) => v == null ? null : v * 100))],
        { yaxis: { range: [0, 100], ticksuffix: " %" } });
    },
    finding(c) {
      c.scope_series.forEach((s, i) => draw("chart-scope-" + i,
        Object.entries(s.lines).map(([name, ys]) => line(name, s.times, ys)),
        { yaxis: { ticksuffix: s.unit ? " " + s.unit : "" } }));
      c.charts.forEach((ch, i) => draw("chart-evidence-" + i, [{ type: "bar", x: ch.labels, y: ch.values,
        hovertemplate: "%{x}: %{y:,.2f}<extra></extra>" }], { hovermode: "closest" }));
    },
    request(c) {
      const colors = palette();
      draw("chart-phases", c.phases.map((p, i) => ({ type: "bar", orientation: "h", name: p.name + " — " + p.meaning,
        x: [p.seconds], y: ["request"], marker: { color: colors[i % colors.length] },
        hovertemplate: p.name + ": %{x:.3f} s<extra></extra>" })),
        { barmode: "stack", hovermode: "closest", margin: { l: 70, b: 80 }, xaxis: { ticksuffix: " s" },
          yaxis: { showticklabels: false }, legend: { y: -0.5 } });
    },
  };

  function idle(id, pattern) {
    draw(id, [{ type: "heatmap", x: pattern.hours.map((h) => String(h).padStart(2, "0") + ":00"), y: pattern.weekdays,
      z: pattern.idle_gpus, colorscale: "YlOrRd", reversescale: true, zmin: 0, colorbar: { title: { text: "idle GPUs" }, thickness: 10 },
      hoverongaps: false, hovertemplate: "%{y} %{x}: %{z:.1f} idle GPUs on average<extra></extra>" }],
      { hovermode: "closest", margin: { l: 48 }, yaxis: { autorange: "reversed", showgrid: false }, xaxis: { showgrid: false } });
  }

  function start() {
    const toggle = document.getElementById("theme-toggle");
    if (toggle) toggle.addEventListener("click", () => {
      const dark = root.dataset.theme ? root.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
      root.dataset.theme = dark ? "light" : "dark";
      localStorage.setItem("iw-theme", root.dataset.theme);
      redrawAll();
    });
    document.querySelectorAll("select[data-autosubmit]").forEach((s) => s.addEventListener("change", () => s.form.submit()));
    const node = document.getElementById("page-context");
    const page = document.body.dataset.page;
    if (node && pages[page]) pages[page](JSON.parse(node.textContent));
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
