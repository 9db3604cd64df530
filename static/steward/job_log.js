/*
 * A job's log, streamed (templates/includes/log_stream.html).
 *
 * An element with data-job-log polls its data-source (GET /api/jobs/<id>/log/?after=<seq>,
 * answering {"chunks": [{"seq", "attempt", "stream", "text"}], "next", "state", "finished",
 * "truncated"}) every data-poll-ms ms, appends each chunk's text to its <pre data-log-text>
 * (replacing the server-rendered tail with the whole log), and stops once the job is finished
 * and an answer brings nothing more. The box follows the end unless the reader scrolled up.
 * Chunks of stderr are marked (class log-stderr). The text is untrusted (whatever user code
 * prints): it is only ever set as textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  var STREAMS = { stdout: true, stderr: true, steward: true };
  // An answer this full means more is waiting: ask again at once (the API's page size).
  var PAGE = 1000;

  function atEnd(box) {
    return box.scrollHeight - box.scrollTop - box.clientHeight < 8;
  }

  function JobLog(root) {
    this.root = root;
    this.source = root.getAttribute("data-source");
    this.pollMs = parseInt(root.getAttribute("data-poll-ms"), 10) || 1500;
    this.box = root.querySelector("[data-log-text]");
    this.status = root.querySelector("[data-log-status]");
    this.truncated = root.querySelector("[data-log-truncated]");
    this.follow = root.querySelector("[data-log-follow]");
    this.after = 0;
    this.isFirst = true;
    var self = this;
    this.box.addEventListener("scroll", function () { self.follow.hidden = atEnd(self.box); });
    this.follow.addEventListener("click", function () {
      self.box.scrollTop = self.box.scrollHeight;
      self.follow.hidden = true;
    });
  }

  JobLog.prototype.start = function () {
    this.root.setAttribute("data-polling", "true");
    this.poll();
  };

  JobLog.prototype.stop = function (reason) {
    this.root.setAttribute("data-polling", "false");
    this.status.textContent = reason;
  };

  JobLog.prototype.later = function (ms) {
    var self = this;
    window.setTimeout(function () { self.poll(); }, ms);
  };

  JobLog.prototype.poll = function () {
    var self = this;
    fetch(this.source + "?after=" + this.after, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          var error = new Error("HTTP " + response.status);
          error.status = response.status;
          throw error;
        }
        return response.json();
      })
      .then(function (answer) {
        self.append(answer.chunks);
        self.after = answer.next;
        self.truncated.hidden = !answer.truncated;
        self.root.setAttribute("data-state", answer.state);
        if (answer.chunks.length >= PAGE) {
          self.later(0);
        } else if (answer.finished && answer.chunks.length === 0) {
          if (!self.isFirst) self.stop("The whole log (the job is " + answer.state + ").");
          else if (self.box.textContent) self.stop("Only the last lines of this job's log were kept.");
          else self.stop("This job wrote no log.");
        } else if (answer.finished) {
          self.later(0); // drain what the job wrote before it finished
        } else {
          self.status.textContent = "Streaming (the job is " + answer.state + ")…";
          self.later(self.pollMs);
        }
      })
      .catch(function (error) {
        if (error.status === 403 || error.status === 404) {
          self.stop("The log is unavailable (" + error.message + ").");
        } else {
          self.status.textContent = "The log is unavailable for now (" + error.message + "); retrying.";
          self.later(self.pollMs * 4);
        }
      });
  };

  JobLog.prototype.append = function (chunks) {
    var box = this.box;
    if (!chunks.length) return;
    if (this.isFirst) {
      // The page showed the last lines; the stream starts from the first. (A job from before
      // whole logs has no chunk: its last lines stay.)
      box.textContent = "";
      this.isFirst = false;
    }
    var following = atEnd(box);
    var fragment = document.createDocumentFragment();
    for (var i = 0; i < chunks.length; i++) {
      var chunk = chunks[i];
      var stream = STREAMS[chunk.stream] ? chunk.stream : "other";
      var span = document.createElement("span");
      span.className = "log-chunk log-" + stream;
      span.setAttribute("data-seq", String(chunk.seq));
      span.setAttribute("data-stream", stream);
      if (stream === "stderr") span.title = "stderr";
      // A chunk holds whole lines; end it with one so the next chunk starts on its own line.
      span.textContent = chunk.text.slice(-1) === "\n" ? chunk.text : chunk.text + "\n";
      fragment.appendChild(span);
    }
    box.appendChild(fragment);
    if (following) box.scrollTop = box.scrollHeight;
    else this.follow.hidden = false;
  };

  function startAll() {
    var roots = document.querySelectorAll("[data-job-log]");
    for (var i = 0; i < roots.length; i++) new JobLog(roots[i]).start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startAll);
  else startAll();
})();
