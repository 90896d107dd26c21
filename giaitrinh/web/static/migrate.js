// Moving open requests to another version: a dry run lists each request and whether it can move;
// the real run sends the requests that can, a batch at a time, with a progress bar.
(function () {
  "use strict";

  var root = document.getElementById("migration");
  var dryButton = document.getElementById("btn-dry-run");
  if (!root || !dryButton) { return; }
  var M = JSON.parse(root.getAttribute("data-messages"));
  var url = root.getAttribute("data-url");
  var csrf = root.getAttribute("data-csrf");
  var runButton = document.getElementById("btn-migrate");
  var target = document.getElementById("target");
  var progress = document.getElementById("migration-progress");
  var status = document.getElementById("migration-status");
  var body = document.querySelector("#migration-table tbody");
  var BATCH = 20;
  var movable = [];

  function t(key, params) {
    var text = M[key] || key;
    Object.keys(params || {}).forEach(function (name) { text = text.split("%(" + name + ")s").join(String(params[name])); });
    return text;
  }

  function post(payload) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(payload)
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) { throw new Error((data.error && data.error.message) || String(response.status)); }
        return data;
      });
    });
  }

  function cell(text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    return td;
  }

  function showRow(item) {
    var row = body.querySelector('tr[data-code="' + CSS.escape(item.code) + '"]');
    if (!row) {
      row = document.createElement("tr");
      row.setAttribute("data-code", item.code);
      body.appendChild(row);
    }
    row.textContent = "";
    row.className = item.ok ? "m-ok" : "m-problem";
    row.appendChild(cell(item.code));
    row.appendChild(cell((item.active_steps || []).join(", ")));
    row.appendChild(cell(item.migrated ? M.migrated : (item.ok ? M.ok : M.problem)));
    row.appendChild(cell((item.problems || []).join("; ")));
  }

  dryButton.addEventListener("click", function () {
    dryButton.disabled = true;
    runButton.disabled = true;
    status.textContent = M.checking;
    body.textContent = "";
    post({ to: parseInt(target.value, 10), dry_run: true }).then(function (result) {
      result.items.forEach(showRow);
      movable = result.items.filter(function (i) { return i.ok; }).map(function (i) { return i.code; });
      status.textContent = result.total ? t("summary", { ok: result.ok, total: result.total }) : M.none;
      root.setAttribute("data-dry-run", "done");
      runButton.disabled = movable.length === 0;
    }).catch(function (e) { status.textContent = M.error + ": " + e.message; })
      .then(function () { dryButton.disabled = false; });
  });

  runButton.addEventListener("click", function () {
    var to = parseInt(target.value, 10);
    var total = movable.length;
    var done = 0;
    var migrated = 0;
    runButton.disabled = true;
    dryButton.disabled = true;
    progress.hidden = false;
    progress.max = total;
    progress.value = 0;
    function next() {
      if (done >= total) {
        status.textContent = t("done", { n: migrated, v: target.options[target.selectedIndex].text });
        root.setAttribute("data-migration", "done");
        dryButton.disabled = false;
        return;
      }
      var batch = movable.slice(done, done + BATCH);
      status.textContent = t("migrating", { done: done, total: total });
      post({ to: to, dry_run: false, codes: batch }).then(function (result) {
        result.items.forEach(showRow);
        migrated += result.migrated;
        done += batch.length;
        progress.value = done;
        next();
      }).catch(function (e) { status.textContent = M.error + ": " + e.message; dryButton.disabled = false; });
    }
    next();
  });
})();
