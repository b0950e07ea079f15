// Live progress of a fine-tune job and its result figures.
(function () {
  const root = document.getElementById("job");
  const jobId = root.dataset.job;
  const figures = JSON.parse(document.getElementById("figures").textContent);
  let history = figures.history || [];
  const live = document.getElementById("live");
  const layout = (extra) => Object.assign({margin: {t: 20, r: 10, b: 40, l: 50}, legend: {orientation: "h"}}, extra);

  function drawLoss() {
    const byRun = {};
    for (const h of history) {
      const key = `w=${h.w} fold ${h.fold}`;
      (byRun[key] = byRun[key] || {x: [], y: [], name: key, mode: "lines+markers", type: "scatter"});
      byRun[key].x.push(h.epoch); byRun[key].y.push(h.loss);
    }
    Plotly.react("loss", Object.values(byRun), layout({xaxis: {title: "epoch", dtick: 1}, yaxis: {title: "weighted training loss"}}),
      {displayModeBar: false, responsive: true});
    document.getElementById("loss").dataset.points = String(history.length);
  }

  function show(job) {
    const status = document.getElementById("job-status");
    status.textContent = job.status; status.dataset.status = job.status; root.dataset.status = job.status;
    status.className = `pill job-${job.status}`;
    const p = job.progress || {};
    if (p.epoch) {
      document.getElementById("progress-text").textContent =
        `run ${p.run}/${p.runs} (w=${p.w}, fold ${p.fold}) · epoch ${p.epoch}/${p.epochs} · loss ${Number(p.loss).toFixed(4)}` +
        (p.test_accuracy != null ? ` · test accuracy ${Number(p.test_accuracy).toFixed(3)}` : "");
      const done = ((p.run - 1) * p.epochs + p.epoch) / (p.runs * p.epochs);
      document.getElementById("progress").value = job.status === "succeeded" ? 1 : done;
    }
    document.getElementById("job-error").textContent = job.error || "";
    if (job.model_version && !document.getElementById("model-link")) {
      document.getElementById("job-result").innerHTML =
        `Registered <a id="model-link" href="/research/models/${job.model_version_id}/">${job.model_version}</a>`;
    }
  }

  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/training/jobs/${jobId}/`);
    let finishedAt = null;
    ws.onopen = () => { live.dataset.state = "live"; live.textContent = "live"; };
    ws.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      if (data.type !== "job") return;
      history = data.history_from === 0 ? data.history : history.concat(data.history);
      drawLoss(); show(data.job);
      const before = root.dataset.initial;
      if (["succeeded", "failed", "cancelled"].includes(data.job.status) && before !== data.job.status) {
        // Results (tables, ROC, Grad-CAM) are rendered by the server: reload once.
        if (!finishedAt) { finishedAt = Date.now(); setTimeout(() => location.reload(), 500); }
      }
    };
    ws.onclose = () => { live.dataset.state = "down"; live.textContent = "reconnecting…"; setTimeout(connect, 2000); };
  }

  root.dataset.initial = root.dataset.status;
  drawLoss();
  if (figures.roc && Object.keys(figures.roc).length) {
    const traces = figures.labels.filter(name => figures.roc[name]).map(name => ({
      x: figures.roc[name].fpr, y: figures.roc[name].tpr, name, mode: "lines", type: "scatter"}));
    traces.push({x: [0, 1], y: [0, 1], name: "chance", mode: "lines", line: {dash: "dot", color: "#aaa"}});
    Plotly.newPlot("roc", traces, layout({xaxis: {title: "false positive rate"}, yaxis: {title: "true positive rate"}}),
      {displayModeBar: false, responsive: true});
  }
  if (figures.confusion && figures.confusion.length) {
    const z = figures.confusion, labels = figures.labels;
    Plotly.newPlot("confusion", [{z, x: labels, y: labels, type: "heatmap", colorscale: [[0, "#f5f8ff"], [1, "#2f5fd0"]], showscale: false,
      text: z.map(r => r.map(String)), texttemplate: "%{text}", textfont: {color: "#1d2330"}}],
      layout({xaxis: {title: "predicted"}, yaxis: {title: "true", autorange: "reversed"}}), {displayModeBar: false, responsive: true});
  }
  connect();
})();
