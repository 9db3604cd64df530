/*
 * Steward's line charts (templates/includes/line_chart.html), drawn with the vendored uPlot.
 *
 * An element with data-line-charts polls its data-source, an endpoint answering
 *   {"series": {key: [{"step", "value"}]}, "next": {...}, "reset", "finished"}
 * (GET /api/jobs/<id>/metrics/), passing each answer's `next` back as the query of the next
 * poll, every data-poll-ms ms until `finished`. It draws one step curve per metric key; keys that
 * differ only by a train/val/test prefix share a chart ("train_loss" and "val_loss" -> "loss").
 * A value of null (NaN) is a gap. Each chart's <figure> says what it drew in data-keys and
 * data-points, and its caption gives the latest values in words.
 * Text from the server is only ever set as textContent.
 */
(function () {
  "use strict";

  var ROLE = /^(train|training|val|valid|validation|test|eval)[_\/.\-]/i;
  var ROLE_COLOURS = { train: "#1f5fbf", training: "#1f5fbf", val: "#c0541b", valid: "#c0541b",
    validation: "#c0541b", test: "#1e7b46", eval: "#1e7b46" };
  var COLOURS = ["#1f5fbf", "#c0541b", "#1e7b46", "#7a3fb0", "#8a5a00", "#0f7c8c"];
  var HEIGHT = 220;
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

  function startAll() {
    var roots = document.querySelectorAll("[data-line-charts]");
    for (var i = 0; i < roots.length; i++) {
      var charts = new LineCharts(roots[i]);
      window.addEventListener("resize", charts.resize.bind(charts));
      charts.start();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startAll);
  else startAll();
})();
