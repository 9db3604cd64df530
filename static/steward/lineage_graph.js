/*
 * Lineage graphs (templates/includes/lineage_graph.html): hovering or focusing a node highlights
 * the edges of its path to the root (their indices are the node's data-path, computed on the
 * server) and the nodes they join. The drawing itself is server-rendered SVG; this only adds
 * and removes classes, so a graph redrawn by htmx ("+" expands a node) works the same.
 */
(function () {
  "use strict";

  function clear(graph) {
    graph.querySelectorAll(".on-path").forEach(function (el) {
      el.classList.remove("on-path");
    });
    graph.classList.remove("tracing");
  }

  function trace(node) {
    var graph = node.closest("[data-lineage-graph]");
    if (!graph) {
      return;
    }
    clear(graph);
    graph.classList.add("tracing");
    node.classList.add("on-path");
    (node.getAttribute("data-path") || "").split(" ").forEach(function (index) {
      if (!index) {
        return;
      }
      var edge = graph.querySelector('[data-edge="' + index + '"]');
      if (!edge) {
        return;
      }
      edge.classList.add("on-path");
      [edge.getAttribute("data-source"), edge.getAttribute("data-target")].forEach(function (key) {
        var end = graph.querySelector('[data-node="' + CSS.escape(key) + '"]');
        if (end) {
          end.classList.add("on-path");
        }
      });
    });
    var root = graph.querySelector(".lineage-root");
    if (root) {
      root.classList.add("on-path");
    }
  }

  ["mouseover", "focusin"].forEach(function (kind) {
    document.addEventListener(kind, function (event) {
      var node = event.target.closest && event.target.closest(".lineage-node");
      if (node) {
        trace(node);
      }
    });
  });
  ["mouseout", "focusout"].forEach(function (kind) {
    document.addEventListener(kind, function (event) {
      var node = event.target.closest && event.target.closest(".lineage-node");
      var graph = node && node.closest("[data-lineage-graph]");
      if (graph && !(event.relatedTarget && node.contains(event.relatedTarget))) {
        clear(graph);
      }
    });
  });
})();
