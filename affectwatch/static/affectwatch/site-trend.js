// A site's emotion trend: loads buckets from the REST API, then merges live minute
// buckets pushed over the WebSocket.
(function () {
  const el = document.getElementById("trend");
  if (!el) return;
  const siteId = el.dataset.site;
  const rangeSel = document.getElementById("range");
  const zoneSel = document.getElementById("zone");
  const live = document.getElementById("live");
  const COLORS = { negative: "#d9534f", neutral: "#8a94a6", positive: "#2e9d5b" };
  let buckets = new Map(); // t (ISO) -> bucket
  let bucketSize = "minute";

  function traces() {
    const ts = Array.from(buckets.keys()).sort();
    return ["negative", "neutral", "positive"].map((label) => ({
      x: ts.map((t) => new Date(t)),
      y: ts.map((t) => buckets.get(t)[label]),
      name: label,
      type: "scatter",
      mode: "lines+markers",
      stackgroup: "one",
      line: { color: COLORS[label], width: 1.5 },
      connectgaps: false,
      hovertemplate: "%{y} " + label + "<extra></extra>",
    }));
  }

  function draw() {
    const layout = {
      margin: { t: 10, r: 10, b: 40, l: 50 },
      height: 360,
      hovermode: "x unified",
      legend: { orientation: "h" },
      yaxis: { title: { text: "faces per " + bucketSize }, rangemode: "tozero" },
      xaxis: { type: "date" },
    };
    Plotly.react(el, traces(), layout, { displaylogo: false, responsive: true });
    el.dataset.points = String(
      Array.from(buckets.values()).reduce((n, b) => n + (b.suppressed ? 0 : b.negative + b.neutral + b.positive), 0)
    );
  }

  async function load() {
    const params = new URLSearchParams({ hours: rangeSel.value });
    if (zoneSel.value) params.set("zone", zoneSel.value);
    const res = await fetch(`/api/v1/sites/${siteId}/trend/?${params}`, { credentials: "same-origin" });
    if (!res.ok) {
      el.textContent = "Could not load the trend: HTTP " + res.status;
      return;
    }
    const data = await res.json();
    bucketSize = data.bucket;
    buckets = new Map(data.series.map((b) => [b.t, b]));
    draw();
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws/sites/${siteId}/`);
    ws.onopen = () => { live.textContent = "live"; live.dataset.state = "live"; };
    ws.onclose = () => {
      live.textContent = "reconnecting…"; live.dataset.state = "down";
      setTimeout(connect, 2000);
    };
    ws.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      if (data.type !== "trend") return;
      // Live pushes are site-wide minute buckets; other views reload instead.
      if (bucketSize !== "minute" || zoneSel.value) { load(); return; }
      for (const b of data.buckets) buckets.set(new Date(b.t).toISOString().replace(".000Z", "+00:00"), b);
      draw();
    };
  }

  rangeSel.addEventListener("change", load);
  zoneSel.addEventListener("change", load);
  load().then(connect);
})();
