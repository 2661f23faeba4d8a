"""The report's inline stylesheet and index script (no network, no external fonts)."""

from __future__ import annotations

__all__ = ["CSS", "INDEX_JS"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 1.5rem 2rem;color:#222}
header{position:sticky;top:0;background:#fff;padding:.6rem 0;border-bottom:1px solid #ddd;z-index:1}
h1{font-size:1.3rem;margin:.6rem 0}
.controls label{margin-right:1rem;font-size:.9rem}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:.8rem;
 margin-top:1rem}
.card{border:1px solid #ddd;border-radius:6px;padding:.4rem;font-size:.82rem;overflow:hidden}
.card img{width:100%;height:130px;object-fit:contain;background:#f4f4f4}
.card a{color:inherit;text-decoration:none}
.badge{display:inline-block;padding:0 .4rem;border-radius:3px;font-size:.75rem}
.converged{background:#d8f5d8}.not-converged{background:#fde7c6}.failed{background:#f8d0d0}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;font-size:.9rem}
figure{display:inline-block;margin:.5rem;vertical-align:top}
figure img{max-width:min(100%,760px);border:1px solid #eee}
#more{margin:1rem 0}
.note{color:#7a4b00;font-size:.78rem;overflow-wrap:anywhere}
"""

#: Renders the gallery from the embedded JSON with DOM APIs only (``textContent``, never
#: ``innerHTML`` with data), in pages of ``PAGE`` cards so 10,000 items stay fast.
INDEX_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var items = data.items;
  var PAGE = 300;
  var shown = 0;
  var current = [];
  var $ = function (id) { return document.getElementById(id); };
  var classes = {};
  items.forEach(function (it) { classes[it.cls] = true; });
  Object.keys(classes).sort().forEach(function (c) {
    var o = document.createElement("option");
    o.value = c; o.textContent = c;
    $("f-class").appendChild(o);
  });
  function card(it) {
    var div = document.createElement("div");
    div.className = "card";
    div.setAttribute("data-id", String(it.id));
    var a = document.createElement("a");
    a.href = it.detail;
    if (it.thumb) {
      var img = document.createElement("img");
      img.loading = "lazy";
      img.src = it.thumb;
      img.alt = it.name;
      a.appendChild(img);
    }
    var title = document.createElement("div");
    title.className = "title";
    title.textContent = it.name;
    a.appendChild(title);
    div.appendChild(a);
    var lab = document.createElement("div");
    lab.className = "label";
    lab.textContent = it.target_label + (it.label !== null && it.label !== it.target_label ?
      " (true: " + it.label + ")" : "");
    div.appendChild(lab);
    var nums = document.createElement("div");
    nums.textContent = "score " + fmt(it.score) + " \u00b7 rel. err " + fmt(it.relative_error);
    div.appendChild(nums);
    var badge = document.createElement("span");
    badge.className = "badge " + it.status.replace(" ", "-");
    badge.textContent = it.status;
    div.appendChild(badge);
    if (it.note) {
      var note = document.createElement("div");
      note.className = "note";
      note.textContent = it.note;
      div.appendChild(note);
    }
    return div;
  }
  function fmt(v) { return v === null ? "n/a" : Number(v).toPrecision(4); }
  function key(it, k) {
    var v = it[k];
    if (k === "relative_error" && v !== null) { v = Math.abs(v); }
    return v === null ? -Infinity : v;
  }
  function update() {
    var cls = $("f-class").value, status = $("f-status").value, match = $("f-match").value;
    var thr = parseFloat($("f-relerr").value);
    var sort = $("f-sort").value.split(":");
    current = items.filter(function (it) {
      if (cls && it.cls !== cls) { return false; }
      if (status && it.status !== status) { return false; }
      var known = it.label !== null;
      if (match === "same" && !(known && it.label === it.target_label)) { return false; }
      if (match === "differ" && !(known && it.label !== it.target_label)) { return false; }
      if (!isNaN(thr) && !(it.relative_error !== null && Math.abs(it.relative_error) > thr)) {
        return false;
      }
      return true;
    });
    if (sort[0] !== "none") {
      var sign = sort[1] === "desc" ? -1 : 1;
      current.sort(function (a, b) {
        var x = key(a, sort[0]), y = key(b, sort[0]);
        return x < y ? -sign : x > y ? sign : a.id - b.id;
      });
    }
    var gallery = $("gallery");
    while (gallery.firstChild) { gallery.removeChild(gallery.firstChild); }
    shown = 0;
    more();
    $("count").textContent = String(current.length);
  }
  function more() {
    var frag = document.createDocumentFragment();
    var end = Math.min(current.length, shown + PAGE);
    for (var i = shown; i < end; i++) { frag.appendChild(card(current[i])); }
    $("gallery").appendChild(frag);
    shown = end;
    $("more").hidden = shown >= current.length;
  }
  ["f-class", "f-status", "f-match", "f-sort"].forEach(function (id) {
    $(id).addEventListener("change", update);
  });
  $("f-relerr").addEventListener("input", update);
  $("f-relerr").addEventListener("change", update);
  $("more").addEventListener("click", more);
  update();
  document.body.setAttribute("data-rendered", "1");
  if (window.performance && performance.mark) { performance.mark("gallery-rendered"); }
})();
"""
