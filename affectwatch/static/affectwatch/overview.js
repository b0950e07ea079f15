// Sparklines of each site's hourly negative share over the last 24 hours.
document.querySelectorAll(".spark").forEach((el) => {
  const t = el.dataset.t ? el.dataset.t.split(",") : [];
  const y = el.dataset.y ? el.dataset.y.split(",").map((v) => (v === "" ? null : Number(v))) : [];
  if (!t.length) { el.innerHTML = '<span class="muted small">no data in the last 24 h</span>'; return; }
  Plotly.newPlot(el, [{ x: t.map((s) => new Date(Number(s) * 1000)), y, type: "scatter", mode: "lines+markers", fill: "tozeroy", marker: { size: 3 },
    line: { color: "#d9534f", width: 1.5 }, hovertemplate: "%{y}% negative<extra></extra>", connectgaps: false }],
    { height: 70, margin: { t: 2, r: 2, b: 2, l: 2 }, xaxis: { visible: false }, yaxis: { visible: false, range: [0, 100] },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)" },
    { displayModeBar: false, staticPlot: true });
});
