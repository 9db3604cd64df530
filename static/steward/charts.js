/*
 * Steward's charts, all drawn with the vendored uPlot (issue 14: one library, used one way).
 *
 * Step curves (templates/includes/line_chart.html): an element with data-line-charts either polls
 * its data-source, an endpoint answering
 *   {"series": {key: [{"step", "value"}]}, "next": {...}, "reset", "finished"}
 * (GET /api/jobs/<id>/metrics/), passing each answer's `next` back as the query of the next
 * poll, every data-poll-ms ms until `finished`, or, with data-series (the id of a json_script
 * element holding {key: [{"step", "value"}]}), draws those once. It draws one step curve per metric key; keys that
 * differ only by a train/val/test prefix share a chart ("train_loss" and "val_loss" -> "loss").
 * A value of null (NaN) is a gap. Each chart's <figure> says what it drew in data-keys and
 * data-points, and its caption gives the latest values in words.
 *
 * Other charts (templates/includes/chart.html, payloads of governance.charts.chart): a <figure>
 * with data-chart-data (the id of a json_script element) is drawn once as a line or bar chart
 * ({"kind", "x": {"label", "values", "labels", "time"}, "y": {"label"},
 *   "series": [{"label", "values", "threshold"}]}); threshold series are dashed lines. The figure
 * gets data-points (the non-null values drawn, thresholds aside); a bar chart also data-x-labels,
 * "slanted" when its labels would not fit level under their bars. Content htmx swaps in
 * (the drift check page refreshes itself while the check runs) is drawn when it arrives.
 * Text from the server is only ever set as textContent.
 */
(function () {
  "use strict";
  // Each include of a chart names this file; the first copy does the work.
  if (window.stewardCharts) return;
  window.stewardCharts = true;

  var ROLE = /^(train|training|val|valid|validation|test|eval)[_\/.\-]/i;
  var ROLE_COLOURS = { train: "#1f5fbf", training: "#1f5fbf", val: "#c0541b", valid: "#c0541b",
    validation: "#c0541b", test: "#1e7b46", eval: "#1e7b46" };
  var COLOURS = ["#1f5fbf", "#c0541b", "#1e7b46", "#7a3fb0", "#8a5a00", "#0f7c8c"];
  var HEIGHT = 220;
  var X_AXIS_SIZE = 50; // uPlot's default height of the x axis
  // uPlot's axis font, to measure the bars' labels with.
  var AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif';
  // Steps are whole numbers: ticks at 1, 2, 5 times powers of ten, never between two steps.
  var STEP_TICKS = [];
  for (var power = 1; power <= 1e15; power *= 10) STEP_TICKS.push(power, 2 * power, 5 * power);

  function chartName(key) {
    var match = key.match(ROLE);
    return match ? key.slice(match[0].length) : key;
  }

  function colour(key, index) {
    var match = key.match(ROLE);
    return (match && ROLE_COLOURS[match[1].toLowerCase()]) || COLOURS[index % COLOURS.length];
  }

  function formatNumber(value) {
    if (value === null || value === undefined) return "NaN";
    var size = Math.abs(value);
    return size !== 0 && (size >= 1e5 || size < 1e-3) ? value.toExponential(3) : String(+value.toPrecision(4));
  }

  function LineCharts(root) {
    this.root = root;
    this.source = root.getAttribute("data-source");
    this.pollMs = parseInt(root.getAttribute("data-poll-ms"), 10) || 2000;
    // A client holds at most twice the server's bound per series, then asks for it all again
    // (thinned by the server), so a page left open on a long run stays small.
    this.maxPoints = 2 * (parseInt(root.getAttribute("data-max-points"), 10) || 1000);
    this.list = root.querySelector("[data-charts]");
    this.status = root.querySelector("[data-charts-status]");
    this.clear();
  }

  LineCharts.prototype.clear = function () {
    this.points = {}; // key -> Map(step -> value)
    this.charts = {}; // chart name -> {figure, caption, plot, keys}
    this.cursor = null;
    while (this.list.firstChild) this.list.removeChild(this.list.firstChild);
  };

  LineCharts.prototype.start = function () {
    var embedded = this.root.getAttribute("data-series");
    if (embedded !== null) {
      var source = document.getElementById(embedded);
      var series = source ? JSON.parse(source.textContent) : {};
      // Empty: the server's "No data yet" stays.
      if (Object.keys(series).length) this.take({ series: series, next: null });
      return;
    }
    this.root.setAttribute("data-polling", "true");
    this.poll();
  };

  LineCharts.prototype.stop = function (reason) {
    this.root.setAttribute("data-polling", "false");
    if (reason) this.status.textContent = reason;
  };

  LineCharts.prototype.poll = function () {
    var self = this;
    var url = this.source + (this.cursor ? "?" + new URLSearchParams(this.cursor).toString() : "");
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          var error = new Error("HTTP " + response.status);
          error.status = response.status;
          throw error;
        }
        return response.json();
      })
      .then(function (answer) {
        if (!self.take(answer)) {
          self.poll(); // from the start, thinned by the server
        } else if (answer.finished) {
          self.stop(Object.keys(self.points).length ? "" : "This job logged no metrics.");
        } else {
          window.setTimeout(function () { self.poll(); }, self.pollMs);
        }
      })
      .catch(function (error) {
        if (error.status === 403 || error.status === 404) {
          self.stop("Metrics unavailable (" + error.message + ").");
        } else {
          self.status.textContent = "Metrics unavailable for now (" + error.message + "); retrying.";
          window.setTimeout(function () { self.poll(); }, self.pollMs * 4);
        }
      });
  };

  // Adds an answer's points and redraws the charts they touch; false (all cleared) when a series
  // grew past what a client holds.
  LineCharts.prototype.take = function (answer) {
    if (answer.reset) this.clear();
    var touched = {};
    var tooLong = false;
    var keys = Object.keys(answer.series);
    for (var k = 0; k < keys.length; k++) {
      var key = keys[k];
      var held = this.points[key] || (this.points[key] = new Map());
      var points = answer.series[key];
      for (var p = 0; p < points.length; p++) held.set(points[p].step, points[p].value);
      if (held.size > this.maxPoints) tooLong = true;
      touched[chartName(key)] = true;
    }
    this.cursor = answer.next;
    if (tooLong) {
      this.clear();
      return false;
    }
    this.status.textContent = Object.keys(this.points).length ? "" : "No metrics logged yet.";
    var names = Object.keys(touched);
    for (var n = 0; n < names.length; n++) this.draw(names[n]);
    return true;
  };

  LineCharts.prototype.keysOf = function (name) {
    return Object.keys(this.points).filter(function (key) { return chartName(key) === name; }).sort();
  };

  LineCharts.prototype.draw = function (name) {
    var keys = this.keysOf(name);
    var self = this;
    var tables = keys.map(function (key) {
      var steps = Array.from(self.points[key].keys()).sort(function (a, b) { return a - b; });
      return [steps, steps.map(function (step) { return self.points[key].get(step); })];
    });
    var data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    var chart = this.charts[name];
    if (!chart) chart = this.charts[name] = this.figure(name);
    if (!chart.plot || chart.keys.join(" ") !== keys.join(" ")) {
      if (chart.plot) chart.plot.destroy();
      chart.keys = keys;
      chart.plot = new uPlot(this.options(keys, chart.canvas), data, chart.canvas);
    } else {
      chart.plot.setData(data);
    }
    var drawn = 0;
    var latest = [];
    for (var i = 0; i < keys.length; i++) {
      var values = tables[i][1];
      drawn += values.length;
      var last = values.length - 1;
      latest.push(keys[i] + " " + formatNumber(values[last]) + " at step " + tables[i][0][last]);
    }
    chart.figure.setAttribute("data-keys", keys.join(" "));
    chart.figure.setAttribute("data-points", String(drawn));
    chart.caption.textContent = name + ": " + latest.join("; ");
  };

  LineCharts.prototype.figure = function (name) {
    var figure = document.createElement("figure");
    figure.className = "chart";
    figure.setAttribute("data-chart", name);
    var canvas = document.createElement("div");
    canvas.className = "chart-canvas";
    var caption = document.createElement("figcaption");
    figure.appendChild(caption);
    figure.appendChild(canvas);
    // Charts in the order of their names, wherever a new one arrives.
    var after = null;
    var children = this.list.children;
    for (var i = 0; i < children.length; i++) {
      if (children[i].getAttribute("data-chart") > name) { after = children[i]; break; }
    }
    this.list.insertBefore(figure, after);
    return { figure: figure, canvas: canvas, caption: caption, plot: null, keys: [] };
  };

  LineCharts.prototype.options = function (keys, canvas) {
    return {
      width: Math.max(canvas.clientWidth, 240),
      height: HEIGHT,
      scales: { x: { time: false } },
      axes: [{ label: "step", incrs: STEP_TICKS }, {}],
      series: [{ label: "step" }].concat(keys.map(function (key, index) {
        return { label: key, stroke: colour(key, index), width: 1.5, points: { show: false } };
      })),
    };
  };

  LineCharts.prototype.resize = function () {
    var names = Object.keys(this.charts);
    for (var i = 0; i < names.length; i++) {
      var chart = this.charts[names[i]];
      if (chart.plot) chart.plot.setSize({ width: Math.max(chart.canvas.clientWidth, 240), height: HEIGHT });
    }
  };

  // A chart of an embedded payload: a line or bar chart over x positions with labels.
  function Chart(figure) {
    this.figure = figure;
    this.canvas = figure.querySelector(".chart-canvas");
    var source = document.getElementById(figure.getAttribute("data-chart-data"));
    this.data = source ? JSON.parse(source.textContent) : null;
    this.plot = null;
    this.height = HEIGHT;
  }

  Chart.prototype.draw = function () {
    var data = this.data;
    if (!this.canvas || !data || !data.x.values.length) return;
    var drawn = 0;
    var columns = [data.x.values];
    for (var i = 0; i < data.series.length; i++) {
      columns.push(data.series[i].values);
      if (!data.series[i].threshold) {
        drawn += data.series[i].values.filter(function (v) { return v !== null; }).length;
      }
    }
    this.plot = new uPlot(this.options(), columns, this.canvas);
    this.figure.setAttribute("data-points", String(drawn));
  };

  Chart.prototype.options = function () {
    var data = this.data;
    var isBar = data.kind === "bar";
    var labels = new Map();
    data.x.values.forEach(function (value, index) { labels.set(value, data.x.labels[index]); });
    var xAxis = { label: data.x.label };
    if (!data.x.time) {
      // Whole-number positions (steps, versions, bars) named by their labels, never in between.
      xAxis.incrs = isBar ? [1] : STEP_TICKS;
      xAxis.values = function (u, splits) {
        return splits.map(function (v) { return labels.has(v) ? labels.get(v) : ""; });
      };
    }
    if (isBar) this.slantLabels(xAxis);
    var scales = { x: { time: !!data.x.time } };
    // Bars stand on zero and need half a position of room at each end.
    if (isBar) {
      scales.x.range = function (u, min, max) { return [min - 0.5, max + 0.5]; };
      scales.y = { range: function (u, min, max) { return [0, Math.max(max, 1) * 1.1]; } };
    }
    // One position (a monitor's first check): uPlot would stretch the axis over years and a line
    // of one point draws nothing, so the axis gets a day (or a step) each side, values show as
    // points, and each threshold is drawn across the plot by the hook below.
    var single = !isBar && data.x.values.length === 1;
    if (single) {
      // A fixed range: uPlot widens a zero-width time range its own way whatever range function
      // it is given.
      var pad = data.x.time ? 86400 : 1;
      var at = data.x.values[0];
      scales.x.auto = false;
      scales.x.range = [at - pad, at + pad];
    }
    var index = 0;
    var series = [{ label: data.x.label, value: function (u, v) { return labels.has(v) ? labels.get(v) : v; } }];
    var acrossPlot = [];
    data.series.forEach(function (s) {
      if (s.threshold) {
        series.push({ label: s.label, stroke: "#b42318", width: 1.5, dash: [6, 4], points: { show: false } });
        if (single && s.values[0] !== null) acrossPlot.push(s.values[0]);
      } else {
        var stroke = COLOURS[index++ % COLOURS.length];
        series.push(isBar
          ? { label: s.label, stroke: stroke, fill: stroke + "99", width: 1, paths: uPlot.paths.bars({ size: [0.6, 48] }), points: { show: false } }
          : single
            ? { label: s.label, stroke: stroke, width: 1.5, points: { show: true, size: 7 } }
            : { label: s.label, stroke: stroke, width: 1.5 });
      }
    });
    var figure = this.figure;
    figure.setAttribute("data-thresholds-across", String(acrossPlot.length));
    // What the x axis spans (seconds on a time axis), once uPlot has set it: for whoever checks
    // a lone point's axis.
    var hooks = { setScale: [function (u, key) {
      if (key === "x") figure.setAttribute("data-x-span", String(u.scales.x.max - u.scales.x.min));
    }] };
    if (acrossPlot.length) {
      hooks.draw = [function (u) {
        var ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "#b42318";
        ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
        acrossPlot.forEach(function (value) {
          var y = u.valToPos(value, "y", true);
          ctx.beginPath();
          ctx.moveTo(u.bbox.left, y);
          ctx.lineTo(u.bbox.left + u.bbox.width, y);
          ctx.stroke();
        });
        ctx.restore();
      }];
    }
    return {
      width: Math.max(this.canvas.clientWidth, 240),
      height: this.height,
      scales: scales,
      axes: [xAxis, { label: data.y.label, values: function (u, splits) { return splits.map(formatNumber); } }],
      series: series,
      hooks: hooks,
    };
  };

  // Bar labels ("cnt (wasserstein)") wider than their bar's slot ran into each other, unreadable:
  // they are then slanted at 45 degrees, with room below the axis for the longest. The figure
  // says which (data-x-labels="level" or "slanted").
  Chart.prototype.slantLabels = function (xAxis) {
    var labels = this.data.x.labels;
    var context = document.createElement("canvas").getContext("2d");
    context.font = AXIS_FONT;
    var widest = 0;
    labels.forEach(function (label) { widest = Math.max(widest, context.measureText(label).width); });
    // The plot leaves about 60 px of the width to the y axis.
    var slot = (Math.max(this.canvas.clientWidth, 240) - 60) / Math.max(labels.length, 1);
    var slanted = widest > 0.9 * slot;
    if (slanted) {
      // Each label ends at its bar and runs down to the left; the plot keeps its height.
      xAxis.rotate = 45;
      xAxis.size = Math.ceil(widest * Math.SQRT1_2) + 24;
      this.height = HEIGHT + xAxis.size - X_AXIS_SIZE;
    }
    this.figure.setAttribute("data-x-labels", slanted ? "slanted" : "level");
  };

  Chart.prototype.resize = function () {
    if (this.plot) this.plot.setSize({ width: Math.max(this.canvas.clientWidth, 240), height: this.height });
  };

  function startAll(root) {
    var roots = root.querySelectorAll("[data-line-charts]:not([data-started])");
    for (var i = 0; i < roots.length; i++) {
      roots[i].setAttribute("data-started", "");
      var charts = new LineCharts(roots[i]);
      window.addEventListener("resize", charts.resize.bind(charts));
      charts.start();
    }
    var figures = root.querySelectorAll("figure[data-chart-data]:not([data-started])");
    for (var f = 0; f < figures.length; f++) {
      figures[f].setAttribute("data-started", "");
      var chart = new Chart(figures[f]);
      window.addEventListener("resize", chart.resize.bind(chart));
      chart.draw();
    }
  }

  function startPage() { startAll(document); }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startPage);
  else startPage();
  document.addEventListener("htmx:load", startPage);
})();
