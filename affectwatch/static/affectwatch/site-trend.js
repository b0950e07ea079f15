// A site's dashboard: the trend (REST, then live minute buckets over a WebSocket), the
// zone breakdown and the weekday × hour heatmap. Series come as columns:
// {t: [Unix seconds...], negative: [...], neutral: [...], positive: [...], tracks: [...], suppressed: [...]}.
(function () {
  const el = document.getElementById("trend");
  if (!el) return;
  const siteId = el.dataset.site;
  const rangeSel = document.getElementById("range");
  const zoneSel = document.getElementById("zone");
  const modeSel = document.getElementById("mode");
  const live = document.getElementById("live");
  const compareBox = document.getElementById("compare");
  const LABELS = ["negative", "neutral", "positive"];
  const BUCKET_MS = { minute: 60e3, hour: 3600e3, day: 86400e3 };
  const COLORS = { negative: "#d9534f", neutral: "#8a94a6", positive: "#2e9d5b" };
  let rows = new Map(); // Unix seconds -> {t, negative, neutral, positive, suppressed}
  let bucketSize = "minute";
  let range = null; // [since, until] of the loaded view
  let lastYear = null; // {series, aligned_t} of the same period 52 weeks earlier, when asked for

  function params(extra) {
    const p = new URLSearchParams({ hours: rangeSel.value, ...extra });
    if (zoneSel.value) p.set("zone", zoneSel.value);
    // Minute buckets (the last hour) are kept 90 days: there is no last year to compare with.
    compareBox.disabled = rangeSel.value === "1";
    if (compareBox.checked && !compareBox.disabled) p.set("compare", "last_year");
    return p;
  }

  function merge(series) {
    series.t.forEach((t, i) => {
      const r = { t, suppressed: series.suppressed[i] };
      LABELS.forEach((l) => (r[l] = series[l][i]));
      rows.set(t, r);
    });
  }

  function draw() {
    const sorted = Array.from(rows.keys()).sort((a, b) => a - b).map((k) => rows.get(k));
    const percent = modeSel.value === "percent";
    // Stacked bars: sparse data and hidden (k-anonymity) buckets stay readable as gaps.
    const traces = LABELS.map((label) => ({
      // Bars start at the bucket's start and span it.
      x: sorted.map((r) => new Date(r.t * 1000 + BUCKET_MS[bucketSize] / 2)),
      y: sorted.map((r) => r[label]),
      width: BUCKET_MS[bucketSize] * 0.9,
      name: label,
      type: "bar",
      marker: { color: COLORS[label] },
      hovertemplate: (percent ? "%{y:.0f}% " : "%{y} ") + label + "<extra></extra>",
    }));
    if (lastYear) {
      // Last year's negative faces as a line over this year's bars: share or count, like the bars.
      const s = lastYear.series;
      const y = s.t.map((_, i) => {
        if (s.suppressed[i]) return null;
        const total = s.negative[i] + s.neutral[i] + s.positive[i];
        return percent ? (total ? (100 * s.negative[i]) / total : null) : s.negative[i];
      });
      traces.push({
        x: lastYear.aligned_t.map((t) => new Date(t * 1000 + BUCKET_MS[bucketSize] / 2)), y,
        name: "negative, a year earlier", type: "scatter", mode: "lines+markers", connectgaps: false,
        line: { color: "#222", dash: "dot" }, marker: { size: 4 },
        hovertemplate: (percent ? "%{y:.0f}% " : "%{y} ") + "negative a year earlier<extra></extra>",
      });
    }
    const layout = {
      margin: { t: 10, r: 10, b: 40, l: 55 }, height: 340, hovermode: "x unified", legend: { orientation: "h" },
      barmode: "stack", barnorm: percent ? "percent" : "", bargap: 0.05,
      yaxis: { title: { text: percent ? "share of faces (%)" : "faces per " + bucketSize }, rangemode: "tozero" },
      xaxis: { type: "date", range: range },
    };
    Plotly.react(el, traces, layout, { displaylogo: false, responsive: true });
    el.dataset.points = String(sorted.reduce((n, r) => n + (r.suppressed ? 0 : r.negative + r.neutral + r.positive), 0));
  }

  async function getJSON(path, p) {
    const res = await fetch(`${path}?${p}`, { credentials: "same-origin" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return res.json();
  }

  async function loadTrend() {
    const p = params();
    document.getElementById("trend-csv").href = `/api/v1/sites/${siteId}/trend/?${p}&format=csv`;
    try {
      const data = await getJSON(`/api/v1/sites/${siteId}/trend/`, p);
      bucketSize = data.bucket;
      range = [new Date(data.since), new Date(data.until)];
      lastYear = data.comparison || null;
      rows = new Map();
      merge(data.series);
      draw();
    } catch (e) { el.textContent = "Could not load the trend: " + e.message; }
  }

  async function loadZones() {
    const zel = document.getElementById("zones");
    const p = new URLSearchParams({ hours: rangeSel.value });
    document.getElementById("zones-csv").href = `/api/v1/sites/${siteId}/zones/?${p}&format=csv`;
    const data = await getJSON(`/api/v1/sites/${siteId}/zones/`, p);
    const zones = data.zones.filter((z) => !z.suppressed);
    if (!zones.length) { zel.innerHTML = '<p class="muted small">Not enough people in any zone for this range.</p>'; return; }
    const traces = LABELS.map((label) => ({
      y: zones.map((z) => z.name), x: zones.map((z) => z[label]), name: label, type: "bar", orientation: "h",
      marker: { color: COLORS[label] },
    }));
    Plotly.react(zel, traces, { barmode: "stack", barnorm: "percent", height: 110 + 40 * zones.length,
      margin: { t: 30, r: 10, b: 30, l: 90 }, xaxis: { ticksuffix: "%" },
      legend: { orientation: "h", y: 1.02, yanchor: "bottom" } },
      { displaylogo: false, responsive: true });
  }

  async function loadHeatmap() {
    const hel = document.getElementById("heatmap");
    document.getElementById("heatmap-csv").href = `/api/v1/sites/${siteId}/heatmap/?format=csv`;
    const data = await getJSON(`/api/v1/sites/${siteId}/heatmap/`, new URLSearchParams());
    Plotly.react(hel, [{ z: data.negative_share, x: data.hours, y: data.days, type: "heatmap",
      colorscale: [[0, "#f4f6fa"], [1, "#d9534f"]], zmin: 0, zmax: 100, hoverongaps: false,
      hovertemplate: "%{y} %{x}:00 – %{z}% negative<extra></extra>", colorbar: { title: { text: "%" } } }],
      { height: 260, margin: { t: 10, r: 10, b: 40, l: 45 }, yaxis: { autorange: "reversed" },
        xaxis: { dtick: 3, ticksuffix: ":00", title: { text: "hour of day" } } },
      { displaylogo: false, responsive: true });
    hel.dataset.filled = String(data.negative_share.flat().filter(v => v != null).length);
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws/sites/${siteId}/`);
    ws.onopen = () => { live.textContent = "live"; live.dataset.state = "live"; };
    ws.onclose = () => { live.textContent = "reconnecting…"; live.dataset.state = "down"; setTimeout(connect, 2000); };
    ws.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      if (data.type !== "trend") return;
      // Pushes are site-wide minute buckets; coarser or zone views reload instead.
      if (bucketSize !== "minute" || zoneSel.value) { loadTrend(); return; }
      merge(data.series);
      draw();
    };
  }

  rangeSel.addEventListener("change", () => { loadTrend(); loadZones(); });
  zoneSel.addEventListener("change", loadTrend);
  compareBox.addEventListener("change", loadTrend);
  modeSel.addEventListener("change", draw);
  loadTrend().then(connect);
  loadZones();
  loadHeatmap();
})();
