(function () {
  "use strict";
  var form = document.getElementById("filters");
  if (!form) { return; }
  var items = [].slice.call(document.querySelectorAll("li.check"));
  var groups = [].slice.call(document.querySelectorAll("[data-group]"));
  function checked(name) {
    return [].slice.call(form.querySelectorAll("input[name=" + name + "]:checked")).map(function (i) { return i.value; });
  }
  function read() {
    return { severity: checked("severity"), status: checked("status"), family: form.elements.family.value, target: form.elements.target.value };
  }
  function apply() {
    var f = read(), shown = 0;
    items.forEach(function (li) {
      var d = li.dataset;
      var ok = (!d.severity || f.severity.indexOf(d.severity) >= 0) && f.status.indexOf(d.status) >= 0 &&
        (!f.family || d.family === f.family) && (!f.target || d.target === f.target);
      li.hidden = !ok;
      if (ok) { shown += 1; }
    });
    groups.forEach(function (g) { g.hidden = !g.querySelector("li.check:not([hidden])"); });
    document.getElementById("shown").textContent = shown + " of " + items.length + " checks shown";
    var parts = [];
    ["severity", "status"].forEach(function (n) {
      if (form.querySelectorAll("input[name=" + n + "]").length !== f[n].length) { parts.push(n + "=" + f[n].join(",")); }
    });
    ["family", "target"].forEach(function (n) { if (f[n]) { parts.push(n + "=" + encodeURIComponent(f[n])); } });
    if (history.replaceState) { history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname); }
  }
  function fromHash() {
    var wanted = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0) { wanted[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1)); }
    });
    ["severity", "status"].forEach(function (n) {
      if (wanted[n] === undefined) { return; }
      var values = wanted[n].split(",");
      form.querySelectorAll("input[name=" + n + "]").forEach(function (i) { i.checked = values.indexOf(i.value) >= 0; });
    });
    ["family", "target"].forEach(function (n) { if (wanted[n] !== undefined) { form.elements[n].value = wanted[n]; } });
    var passes = document.getElementById("passes");
    if (passes && wanted.status && wanted.status.indexOf("failed") < 0) { passes.open = true; }
  }
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (e) { e.preventDefault(); });
  fromHash();
  apply();
}());
