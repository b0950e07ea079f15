// Live progress of a fine-tune job and its result figures.
(function () {
  const root = document.getElementById("job");
  const jobId = root.dataset.job;
  const figures = JSON.parse(document.getElementById("figures").textContent);
  let history = figures.history || [];
  const live = document.getElementById("live");
  const layout = (extra) => Object.assign({margin: {t: 20, r: 10, b: 40, l: 50}, legend: {orientation: "h"}}, extra);

  // One colour per w, so a sweep's runs overlay; folds of one w share it. The loss is
  // the plain cross-entropy (no w, no smoothing): comparable across w, unlike the
  // weighted loss being optimised.
  const palette = ["#2f5fd0", "#d0622f", "#2f9d5c", "#8a4fd0", "#c0392b", "#16818a", "#a67c00", "#555"];
  function drawLoss() {
    const ws = [...new Set(history.map(h => h.w))];
    const runs = {};
    for (const h of history) {
      const key = `w=${h.w} fold ${h.fold}`;
      const color = palette[ws.indexOf(h.w) % palette.length];
      const r = runs[key] = runs[key] || {key, color, x: [], ce: [], val: [], acc: []};
      r.x.push(h.epoch);
      r.ce.push(h.train_ce != null ? h.train_ce : h.loss);
      r.val.push(h.val_loss); r.acc.push(h.val_accuracy);
    }
    const loss = [], acc = [];
    for (const r of Object.values(runs)) {
      loss.push({x: r.x, y: r.ce, name: `${r.key} training`, mode: "lines+markers", line: {color: r.color}, legendgroup: r.key});
      if (r.val.some(v => v != null)) {
        loss.push({x: r.x, y: r.val, name: `${r.key} validation`, mode: "lines", line: {color: r.color, dash: "dot"}, legendgroup: r.key});
        acc.push({x: r.x, y: r.acc, name: r.key, mode: "lines+markers", line: {color: r.color}});
      }
    }
    const opts = {displayModeBar: false, responsive: true};
    Plotly.react("loss", loss, layout({xaxis: {title: "epoch", dtick: 1}, yaxis: {title: "cross-entropy"}}), opts);
    Plotly.react("val-accuracy", acc, layout({xaxis: {title: "epoch", dtick: 1}, yaxis: {title: "validation accuracy", range: [0, 1]}}), opts);
    document.getElementById("loss").dataset.points = String(history.length);
    document.getElementById("val-accuracy").dataset.runs = String(acc.length);
  }

  function show(job) {
    const status = document.getElementById("job-status");
    status.textContent = job.status; status.dataset.status = job.status; root.dataset.status = job.status;
    status.className = `pill job-${job.status}`;
    const p = job.progress || {};
    if (p.epoch) {
      document.getElementById("progress-text").textContent =
        `run ${p.run}/${p.runs} (w=${p.w}, fold ${p.fold}) · epoch ${p.epoch}/${p.epochs} · loss ${Number(p.loss).toFixed(4)}` +
        (p.val_accuracy != null ? ` · validation accuracy ${Number(p.val_accuracy).toFixed(3)}` : "");
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
