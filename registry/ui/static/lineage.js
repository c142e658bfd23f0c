// The lineage graph: ancestors left of the version, descendants right, one column per hop.
// Vanilla SVG, no library. Every name from the registry is set as text (textContent, setAttribute on our own
// URLs), never parsed as markup. Usable at thousands of nodes: one layout pass, edge labels hidden when zoomed out.
"use strict";
(function () {
  var box = document.getElementById("graph");
  if (!box) return;
  var status = document.getElementById("graph-status");
  var typesBox = document.getElementById("edge-types");
  var impactBox = document.getElementById("impact-mode");
  var SVG = "http://www.w3.org/2000/svg";
  var COL = 330, ROW = 40, NODE_W = 220, NODE_H = 26, MAX_ROWS = 100;
  var data = null, hiddenTypes = {}, view = { x: 0, y: 0, k: 1 }, svg = null, layer = null;

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function versionUrl(ref) {
    var at = ref.lastIndexOf("@"), artifact = ref.slice(0, at), slash = artifact.indexOf("/");
    return "/ui/artifacts/" + encodeURIComponent(artifact.slice(0, slash)) + "/" +
      encodeURIComponent(artifact.slice(slash + 1)) + "/versions/" + encodeURIComponent(ref.slice(at + 1));
  }

  function safeHref(url) {
    return typeof url === "string" && /^https?:\/\/[^\s]+$/i.test(url) ? url : null;
  }

  function label(key, node) {
    if (node.type === "hidden") return key.indexOf("hidden:source-") === 0 ? "hidden source" : "hidden version";
    if (node.type === "external") return node.kind === "huggingface" ? "hf: " + node.repo : (node.url || key);
    return key;
  }

  function shorten(text, max) { return text.length > max ? text.slice(0, max - 1) + "\u2026" : text; }

  // Columns from the root: walk each side's edges breadth-first (filtered by the edge-type boxes).
  function layout() {
    var showUp = !impactBox.checked;
    var adj = { up: {}, down: {} };
    data.edges.forEach(function (e) {
      if (hiddenTypes[e.type]) return;
      if (e.side === "up" && showUp) (adj.up[e.child] = adj.up[e.child] || []).push(e.parent);
      if (e.side === "down") (adj.down[e.parent] = adj.down[e.parent] || []).push(e.child);
    });
    // Each side: breadth-first from the root; a column keeps discovery order, so siblings sit together.
    var pos = {};
    pos[data.root] = { x: 0, y: 0 };
    [["up", -1], ["down", 1]].forEach(function (side) {
      var frontier = [data.root], seen = {}, x = 0;
      seen[data.root] = true;
      while (frontier.length) {
        var next = [];
        frontier.forEach(function (key) {
          (adj[side[0]][key] || []).forEach(function (other) {
            if (seen[other] || pos[other]) return;
            seen[other] = true;
            next.push(other);
          });
        });
        // A tall column wraps into sub-columns of MAX_ROWS, so 1,000 nodes still fit a screen when zoomed out.
        var wraps = Math.max(1, Math.ceil(next.length / MAX_ROWS));
        var rows = Math.ceil(next.length / wraps);
        next.forEach(function (key, i) {
          var sub = Math.floor(i / rows), row = i % rows;
          pos[key] = { x: x + side[1] * (sub + 1) * COL, y: (row - (rows - 1) / 2) * ROW };
        });
        x += side[1] * wraps * COL;
        frontier = next;
      }
    });
    return pos;
  }

  function draw() {
    var pos = layout();
    while (layer.firstChild) layer.removeChild(layer.firstChild);
    var edgesG = el("g", { "class": "edges" }, layer), nodesG = el("g", { "class": "nodes" }, layer);
    var shownEdges = 0;
    data.edges.forEach(function (e) {
      var a = pos[e.parent], b = pos[e.child];
      if (!a || !b || hiddenTypes[e.type]) return;
      shownEdges += 1;
      var x1 = a.x + NODE_W / 2, y1 = a.y, x2 = b.x - NODE_W / 2, y2 = b.y, mx = (x1 + x2) / 2;
      var path = el("path", {
        d: "M" + x1 + "," + y1 + " C" + mx + "," + y1 + " " + mx + "," + y2 + " " + x2 + "," + y2,
        "class": "edge " + (e.origin === "recorded" ? "recorded" : "declared"), "marker-end": "url(#arrow)",
      }, edgesG);
      var title = el("title", {}, path);
      title.textContent = e.type + " (" + e.origin + "): " + e.parent + " \u2192 " + e.child;
      var text = el("text", { x: mx, y: (y1 + y2) / 2 - 3, "class": "elabel", "text-anchor": "middle" }, edgesG);
      text.textContent = e.type;
    });
    var shownNodes = 0;
    Object.keys(pos).forEach(function (key) {
      var node = data.nodes[key] || { type: "hidden" }, p = pos[key];
      var classes = "node " + (node.type || "version") + (key === data.root ? " root" : "") +
        (node.mark ? " " + node.mark : "");
      var href = node.type === "version" ? versionUrl(key) : node.type === "external" ? safeHref(node.url) : null;
      var g = el(href ? "a" : "g", { "class": classes, transform: "translate(" + (p.x - NODE_W / 2) + "," + (p.y - NODE_H / 2) + ")" }, nodesG);
      if (href) g.setAttribute("href", href);
      g.setAttribute("data-key", key);
      el("rect", { width: NODE_W, height: NODE_H }, g);
      var text = el("text", { x: 8, y: 17 }, g);
      text.textContent = shorten(label(key, node), 32) + (node.mark ? " [" + node.mark + "]" : "");
      var title = el("title", {}, g);
      title.textContent = label(key, node) + (node.kind ? " \u00b7 " + node.kind : "") +
        (node.mark ? " \u00b7 " + node.mark : "") + (node.committed_at ? " \u00b7 committed " + node.committed_at : "");
      shownNodes += 1;
    });
    status.textContent = shownNodes + " nodes, " + shownEdges + " edges" +
      (data.truncated ? " (cut at the first " + data.edges.length + " edges: lower the depth)" : "") + ".";
    box.dataset.nodes = String(shownNodes);
    return pos;
  }

  function apply() {
    layer.setAttribute("transform", "translate(" + view.x + "," + view.y + ") scale(" + view.k + ")");
    box.classList.toggle("far", view.k < 0.6);
  }

  function fit(pos) {
    var keys = Object.keys(pos);
    if (!keys.length) return;
    var minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
    keys.forEach(function (k) {
      minX = Math.min(minX, pos[k].x); maxX = Math.max(maxX, pos[k].x);
      minY = Math.min(minY, pos[k].y); maxY = Math.max(maxY, pos[k].y);
    });
    var w = box.clientWidth, h = box.clientHeight;
    var k = Math.min(1.2, w / (maxX - minX + NODE_W + 40), h / (maxY - minY + NODE_H + 40));
    view.k = Math.max(k, 0.02);
    view.x = w / 2 - (minX + maxX) / 2 * view.k;
    view.y = h / 2 - (minY + maxY) / 2 * view.k;
    apply();
  }

  function zoomAt(factor, cx, cy) {
    var k = Math.min(4, Math.max(0.02, view.k * factor));
    view.x = cx - (cx - view.x) * (k / view.k);
    view.y = cy - (cy - view.y) * (k / view.k);
    view.k = k;
    apply();
  }

  function controls(pos) {
    var bar = document.createElement("div");
    bar.className = "zoom";
    [["+", "Zoom in", function () { zoomAt(1.25, box.clientWidth / 2, box.clientHeight / 2); }],
     ["\u2212", "Zoom out", function () { zoomAt(0.8, box.clientWidth / 2, box.clientHeight / 2); }],
     ["Fit", "Fit the graph", function () { fit(pos.current); }]].forEach(function (b) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = b[0];
      button.setAttribute("aria-label", b[1]);
      button.addEventListener("click", b[2]);
      bar.appendChild(button);
    });
    box.appendChild(bar);
  }

  function panning() {
    var start = null, moved = false;
    svg.addEventListener("pointerdown", function (ev) {
      start = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y }; moved = false;
    });
    svg.addEventListener("pointermove", function (ev) {
      if (!start) return;
      var dx = ev.clientX - start.x, dy = ev.clientY - start.y;
      if (!moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      if (!moved) { moved = true; svg.setPointerCapture(ev.pointerId); svg.classList.add("dragging"); }
      view.x = start.vx + dx; view.y = start.vy + dy; apply();
    });
    var end = function () { start = null; svg.classList.remove("dragging"); };
    svg.addEventListener("pointerup", end);
    svg.addEventListener("pointercancel", end);
    svg.addEventListener("click", function (ev) { if (moved) { ev.preventDefault(); moved = false; } }, true);
    svg.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var r = svg.getBoundingClientRect();
      zoomAt(ev.deltaY < 0 ? 1.15 : 1 / 1.15, ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
  }

  function typeFilters(redraw) {
    var types = {};
    data.edges.forEach(function (e) { types[e.type] = true; });
    Object.keys(types).sort().forEach(function (t) {
      var lab = document.createElement("label");
      var input = document.createElement("input");
      input.type = "checkbox"; input.checked = true; input.value = t; input.name = "type";
      input.addEventListener("change", function () { hiddenTypes[t] = !input.checked; redraw(); });
      lab.appendChild(input);
      lab.appendChild(document.createTextNode(" " + t));
      typesBox.appendChild(lab);
    });
  }

  fetch(box.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(function (json) {
      data = json;
      while (box.firstChild) box.removeChild(box.firstChild);
      svg = el("svg", { role: "group", "aria-label": "lineage graph of " + data.root }, box);
      var defs = el("defs", {}, svg);
      var marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7",
        markerHeight: "7", orient: "auto-start-reverse" }, defs);
      el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6e7781" }, marker);
      layer = el("g", {}, svg);
      var pos = { current: draw() };
      var redraw = function () { pos.current = draw(); fit(pos.current); };
      typeFilters(redraw);
      impactBox.addEventListener("change", redraw);
      controls(pos);
      panning();
      fit(pos.current);
      box.dataset.ready = "1";
      box.dataset.readyAt = String(performance.now());
    })
    .catch(function (err) {
      status.textContent = "The graph could not be loaded: " + err.message;
      box.dataset.ready = "error";
    });
})();
