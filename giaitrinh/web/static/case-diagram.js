// The BPMN diagram of a case (completed path, current tasks, overdue, incidents) or of a process
// as a heatmap. Data comes from the JSON URL in data-url; markers are CSS classes (app.css), so
// the strict CSP needs no inline style.
(function () {
  "use strict";

  function mark(canvas, registry, ids, cls) {
    (ids || []).forEach(function (id) {
      if (registry.get(id)) { canvas.addMarker(id, cls); }
    });
  }

  function chip(text, cls) {
    var el = document.createElement("span");
    el.className = "count-chip" + (cls ? " " + cls : "");
    el.textContent = String(text);
    return el;
  }

  function show(container, data) {
    var viewer = new window.BpmnJS({ container: container });
    return viewer.importXML(data.xml).then(function () {
      var canvas = viewer.get("canvas");
      var registry = viewer.get("elementRegistry");
      canvas.zoom("fit-viewport");
      if (container.getAttribute("data-mode") === "heatmap") {
        var overlays = viewer.get("overlays");
        var nodes = data.nodes || {};
        var top = 0;
        Object.keys(nodes).forEach(function (id) { top = Math.max(top, nodes[id].open); });
        Object.keys(nodes).forEach(function (id) {
          if (!registry.get(id)) { return; }
          var n = nodes[id];
          var level = top ? Math.max(1, Math.ceil(4 * n.open / top)) : 0;
          if (n.open) { canvas.addMarker(id, "gt-heat-" + level); }
          if (n.incidents) { canvas.addMarker(id, "gt-incident"); }
          var box = document.createElement("div");
          box.className = "heat-counts";
          box.appendChild(chip(n.open, ""));
          if (n.overdue) { box.appendChild(chip(n.overdue, "late")); }
          if (n.incidents) { box.appendChild(chip(n.incidents, "incident")); }
          overlays.add(id, "heat", { position: { top: -14, right: 10 }, html: box });
        });
      } else {
        mark(canvas, registry, data.completed, "gt-done");
        mark(canvas, registry, data.active, "gt-active");
        mark(canvas, registry, data.overdue, "gt-late");
        mark(canvas, registry, data.incidents, "gt-incident");
      }
      container.setAttribute("data-ready", "true");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-url].diagram").forEach(function (container) {
      if (!window.BpmnJS) {
        container.textContent = "bpmn-js chưa được cài (run `make assets`).";
        return;
      }
      fetch(container.getAttribute("data-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) { return show(container, data); })
        .catch(function (error) {
          container.setAttribute("data-ready", "error");
          container.textContent = "Không tải được sơ đồ (" + error.message + ").";
        });
    });
  });
})();
