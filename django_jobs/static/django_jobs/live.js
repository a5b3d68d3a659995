/* django_jobs admin: live pages refresh themselves (plain JS, no CDN, no build step).

   A page opts in with its toggle, <label id="djj-live-toggle" data-seconds="SECONDS" hidden>
   (with data-reload to reload the page whole); its live parts carry an id and the
   attribute data-djj-part. Every SECONDS the page is fetched again and each part is replaced
   by its new version (the job list, whose action checkboxes Django's actions.js holds on to,
   is reloaded whole). Nothing refreshes while the tab is hidden, a field has focus or was
   edited, or rows are selected. The "Live" toggle (default on) is remembered per browser.
   Without JavaScript the pages work the same, without refreshing. */
(function () {
  "use strict";
  var KEY = "djj.live";
  var toggle = document.getElementById("djj-live-toggle");
  var seconds = toggle ? parseFloat(toggle.getAttribute("data-seconds") || "0") : 0;
  if (!seconds) { return; }
  var edited = false;
  var box = toggle.querySelector("input");
  toggle.hidden = false;
  box.checked = window.localStorage.getItem(KEY) !== "off";
  box.addEventListener("change", function () {
    window.localStorage.setItem(KEY, box.checked ? "on" : "off");
  });
  document.addEventListener("input", function (event) {
    if (event.target !== box) { edited = true; }
  });
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("summary")) { edited = true; }  /* reading a traceback */
  });

  function busy() {
    if (!box.checked || document.hidden || edited) { return true; }
    var active = document.activeElement;
    if (active && active !== box && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) { return true; }
    return document.querySelector("input.action-select:checked") !== null;
  }

  function refresh() {
    if (busy()) { return; }
    if (toggle.hasAttribute("data-reload")) {
      window.location.reload();
      return;
    }
    fetch(window.location.href, {credentials: "same-origin", headers: {"X-Requested-With": "djj-live"}})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null || busy()) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-djj-part]").forEach(function (part) {
          var next = fresh.getElementById(part.id);
          if (next) { part.replaceWith(document.importNode(next, true)); }
        });
        document.body.setAttribute("data-djj-refreshed", String(Date.now()));
      })
      .catch(function () { /* offline for a moment: try again at the next tick */ });
  }

  window.setInterval(refresh, seconds * 1000);
})();
