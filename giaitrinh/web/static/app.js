// Progressive enhancement only: every page works without it.
(function () {
  "use strict";

  // Fields that matter only for one answer (e.g. the refusal ground) hide until that answer is chosen.
  function syncConditional(form) {
    form.querySelectorAll("[data-show-if]").forEach(function (field) {
      var name = field.getAttribute("data-show-if");
      var wanted = field.getAttribute("data-show-value");
      var chosen = form.querySelector('[name="' + CSS.escape(name) + '"]:checked') ||
                   form.querySelector('select[name="' + CSS.escape(name) + '"]');
      var show = chosen && chosen.value === wanted;
      // Keep a field with an error visible whatever is chosen, so the message is read.
      field.hidden = !show && !field.classList.contains("invalid");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form").forEach(function (form) {
      if (form.querySelector("[data-show-if]")) {
        syncConditional(form);
        form.addEventListener("change", function () { syncConditional(form); });
      }
      var question = form.getAttribute("data-confirm");
      if (question) {
        form.addEventListener("submit", function (event) {
          if (!window.confirm(question)) { event.preventDefault(); }
        });
      }
    });
    document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { el.form.submit(); });
    });
    document.querySelectorAll("input.copy").forEach(function (el) {
      el.addEventListener("focus", function () { el.select(); });
    });
  });
})();
