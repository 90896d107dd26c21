// Bulk actions on the instance list: sends the chosen cases in chunks to the JSON API (each case
// is its own transaction on the server), shows progress and what happened to each case.
(function () {
  "use strict";
  var CHUNK = 10;

  function post(url, csrf, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, Accept: "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) { throw new Error((data.error && data.error.message) || ("HTTP " + response.status)); }
        return data;
      });
    });
  }

  function line(list, code, ok, text) {
    var li = document.createElement("li");
    li.className = ok ? "ok" : "failed";
    li.setAttribute("data-code", code);
    var strong = document.createElement("strong");
    strong.textContent = code;
    li.appendChild(strong);
    li.appendChild(document.createTextNode(" " + text));
    list.appendChild(li);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("bulk-form");
    if (!form) { return; }
    var all = document.getElementById("bulk-all-page");
    if (all) {
      all.addEventListener("change", function () {
        form.querySelectorAll("input[name=codes]").forEach(function (box) { box.checked = all.checked; });
      });
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var csrf = form.querySelector("input[name=_csrf]").value;
      var action = form.querySelector("[name=action]").value;
      var note = form.querySelector("[name=note]").value;
      var assignee = form.querySelector("[name=assignee]");
      var progress = document.getElementById("bulk-progress");
      var status = document.getElementById("bulk-status");
      var results = document.getElementById("bulk-results");
      var button = document.getElementById("bulk-run");
      results.textContent = "";
      var codesReady;
      if (document.getElementById("bulk-all-matching").checked) {
        var url = form.getAttribute("data-list");
        url += (url.indexOf("?") < 0 ? "?" : "&") + "per_page=200";
        codesReady = fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); })
          .then(function (data) { return data.items.map(function (i) { return i.code; }); });
      } else {
        codesReady = Promise.resolve(Array.prototype.map.call(
          form.querySelectorAll("input[name=codes]:checked"), function (box) { return box.value; }));
      }
      codesReady.then(function (codes) {
        if (!codes.length) { status.textContent = "Chưa chọn hồ sơ nào."; return; }
        button.disabled = true;
        progress.hidden = false;
        progress.max = codes.length;
        progress.value = 0;
        var done = 0, ok = 0, failed = 0;
        var chunks = [];
        for (var i = 0; i < codes.length; i += CHUNK) { chunks.push(codes.slice(i, i + CHUNK)); }
        return chunks.reduce(function (previous, chunk) {
          return previous.then(function () {
            var body = { action: action, codes: chunk, note: note };
            if (action === "reassign" && assignee) { body.assignee = assignee.value; }
            return post(form.getAttribute("data-api"), csrf, body).then(function (data) {
              data.results.forEach(function (r) {
                if (r.ok) { ok += 1; line(results, r.code, true, "✓"); } else { failed += 1; line(results, r.code, false, "✗ " + r.error); }
              });
            }, function (error) {
              chunk.forEach(function (code) { failed += 1; line(results, code, false, "✗ " + error.message); });
            }).then(function () {
              done += chunk.length;
              progress.value = done;
              status.textContent = done + "/" + codes.length + " · ✓ " + ok + " · ✗ " + failed;
            });
          });
        }, Promise.resolve()).then(function () {
          button.disabled = false;
          status.setAttribute("data-done", "true");
        });
      });
    });
  });
})();
