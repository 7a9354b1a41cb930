// The static edition's scripts: the sidebar's search over window.DDPM_SEARCH (_static/search_index.js)
// and the scrubbers that stand in for the live widgets (ddpm_lib.course.site). Plain JavaScript,
// no library, nothing fetched: frames are image files beside the page, their table a <script>.
(function () {
  "use strict";

  // ---- search ------------------------------------------------------------------------------
  function setupSearch() {
    var box = document.getElementById("ddpm-search");
    var list = document.getElementById("ddpm-results");
    if (!box || !list || !window.DDPM_SEARCH) return;
    var root = document.body.getAttribute("data-root") || "";
    box.addEventListener("input", function () {
      var words = box.value.toLowerCase().split(/\s+/).filter(function (w) { return w.length > 1; });
      list.innerHTML = "";
      if (!words.length) return;
      var hits = [];
      window.DDPM_SEARCH.forEach(function (s) {
        var text = (s.title + " " + s.text).toLowerCase();
        var score = 0;
        for (var i = 0; i < words.length; i++) {
          var n = text.split(words[i]).length - 1;
          if (!n) return;
          score += n + (s.title.toLowerCase().indexOf(words[i]) >= 0 ? 10 : 0);
        }
        hits.push([score, s]);
      });
      hits.sort(function (a, b) { return b[0] - a[0]; });
      hits.slice(0, 12).forEach(function (h) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = root + h[1].url;
        a.textContent = h[1].title;
        var where = document.createElement("span");
        where.className = "ddpm-where";
        where.textContent = h[1].chapter;
        li.appendChild(a);
        li.appendChild(where);
        list.appendChild(li);
      });
      if (!hits.length) list.innerHTML = "<li>no match</li>";
    });
  }

  // ---- scrubbers ---------------------------------------------------------------------------
  function nearestKey(table, idx, keep) {
    // the exported frame whose control indices are closest to idx (a documented subset may leave
    // some combinations out): the control the reader just moved (keep) at its new value when such a
    // frame exists, then fewest controls changed, then the smallest moves
    var best = null, bestCost = Infinity;
    Object.keys(table.frames).forEach(function (key) {
      var k = key.split("_").map(Number), changed = 0, moved = 0;
      if (keep !== undefined && k[keep] !== idx[keep]) changed += 100;
      for (var i = 0; i < k.length; i++) {
        if (k[i] !== idx[i]) { changed++; moved += Math.abs(k[i] - idx[i]); }
      }
      var cost = changed * 1e6 + moved;
      if (cost < bestCost) { bestCost = cost; best = key; }
    });
    return best;
  }

  function setupScrubber(el) {
    var table = (window.DDPM_FRAMES || {})[el.getAttribute("data-explorer")];
    if (!table) return;
    var img = el.querySelector("img.ddpm-frame");
    var readout = el.querySelector(".ddpm-readout");
    var note = el.querySelector(".ddpm-note");
    var controls = el.querySelector(".ddpm-controls");
    var base = el.getAttribute("data-base");
    var idx = table.controls.map(function (c) { return c.index; });
    var inputs = [];

    function show(moved) {
      var key = idx.join("_");
      var exact = Object.prototype.hasOwnProperty.call(table.frames, key);
      if (!exact) key = nearestKey(table, idx, moved);
      var f = table.frames[key];
      img.src = base + f[0];
      readout.innerHTML = f[1];
      var shown = key.split("_").map(Number);
      if (!exact) {  // the inputs follow the picture shown, so the next move starts from it
        idx = shown.slice();
        inputs.forEach(function (inp, i) { inp.input.value = String(shown[i]); });
      }
      table.controls.forEach(function (c, i) {
        // the values the picture shows: the key's, or those the controls moved to (f[2])
        inputs[i].value.textContent = f.length > 2 ? f[2][i] : c.labels[shown[i]];
      });
      note.textContent = exact ? "" : "(that combination was not drawn in advance: the nearest one is shown)";
      note.hidden = exact;
    }

    table.controls.forEach(function (c, i) {
      var label = document.createElement("label");
      label.appendChild(document.createTextNode(c.description + " "));
      var input;
      if (c.kind === "select") {
        input = document.createElement("select");
        c.labels.forEach(function (text, j) {
          var o = document.createElement("option");
          o.value = String(j);
          o.textContent = text;
          input.appendChild(o);
        });
        input.value = String(c.index);
        input.addEventListener("change", function () { idx[i] = Number(input.value); show(i); });
      } else {
        input = document.createElement("input");
        input.type = "range";
        input.min = "0";
        input.max = String(c.labels.length - 1);
        input.step = "1";
        input.value = String(c.index);
        input.addEventListener("input", function () { idx[i] = Number(input.value); show(i); });
      }
      input.setAttribute("data-control", c.name);
      input.setAttribute("aria-label", c.description);
      var value = document.createElement("span");
      value.className = "ddpm-value";
      if (c.kind === "select") value.hidden = true;  // a select shows its value itself
      label.appendChild(input);
      label.appendChild(value);
      controls.appendChild(label);
      inputs.push({input: input, value: value});
    });
    show();
    el.setAttribute("data-ready", "1");
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupSearch();
    Array.prototype.forEach.call(document.querySelectorAll(".ddpm-scrubber"), setupScrubber);
  });
})();
