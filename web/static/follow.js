// Ick's build page, live: follows the build's events (Server-Sent Events
// from /builds/ID/events) and adds its output as it comes, numbered and
// linked like the lines the page came with; actions' states change in
// place; when the build ends, the page is loaded again as it now is.
// Text only ever goes in as text (textContent), never as markup.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log || !log.dataset.follow || !window.EventSource) return;

  var sections = {};
  var number = 0;
  log.querySelectorAll("section").forEach(function (s) {
    sections[s.dataset.node + "/" + s.dataset.attempt] = {
      pre: s.querySelector("pre"),
      lastSeq: Number(s.dataset.lastSeq),
      partial: s.hasAttribute("data-partial"),
      style: { fg: s.dataset.fg === undefined ? null : Number(s.dataset.fg), bold: s.hasAttribute("data-bold") },
    };
  });
  log.querySelectorAll(".line").forEach(function () { number += 1; });

  function section(chunk) {
    var key = chunk.node + "/" + chunk.attempt;
    var s = sections[key];
    if (s) return s;
    var el = document.createElement("section");
    var h = document.createElement("h3");
    h.textContent = chunk.pipeline + " #" + (chunk.index + 1) + " (attempt " + chunk.attempt + ")";
    var pre = document.createElement("pre");
    el.appendChild(h);
    el.appendChild(pre);
    var more = log.querySelector(".more");
    log.insertBefore(el, more);
    s = sections[key] = { pre: pre, lastSeq: -1, partial: false, style: { fg: null, bold: false } };
    return s;
  }

  // ANSI colours (ESC [ … m), as web/src/ansi.rs reads them for the
  // page: spans of classes fgN and b; every other escape is dropped.
  function applySgr(style, params) {
    var codes = params === "" ? [0] : params.split(";").map(function (p) { return Number(p) || 0; });
    for (var i = 0; i < codes.length; i++) {
      var c = codes[i];
      if (c === 0) { style.fg = null; style.bold = false; }
      else if (c === 1) style.bold = true;
      else if (c === 22) style.bold = false;
      else if (c >= 30 && c <= 37) style.fg = c - 30;
      else if (c === 39) style.fg = null;
      else if (c >= 90 && c <= 97) style.fg = c - 90 + 8;
      else if (c === 38 && codes[i + 1] === 5) { var n = codes[i + 2]; style.fg = n < 16 ? n : null; i += 2; }
      else if (c === 38 && codes[i + 1] === 2) { style.fg = null; i += 4; }
    }
  }

  function appendText(line, text, s) {
    var re = /\x1b(\[([0-9;]*)([\x40-\x7e])|.)?/g;
    var at = 0, m;
    function put(t) {
      if (t === "") return;
      var classes = [];
      if (s.style.fg !== null) classes.push("fg" + s.style.fg);
      if (s.style.bold) classes.push("b");
      if (classes.length === 0) { line.appendChild(document.createTextNode(t)); return; }
      var span = document.createElement("span");
      span.className = classes.join(" ");
      span.textContent = t;
      line.appendChild(span);
    }
    while ((m = re.exec(text)) !== null) {
      put(text.slice(at, m.index));
      if (m[3] === "m") applySgr(s.style, m[2]);
      at = re.lastIndex;
    }
    put(text.slice(at));
  }

  function newLine(s, stderr) {
    number += 1;
    var line = document.createElement("span");
    line.className = "line" + (stderr ? " stderr" : "");
    line.id = "L" + number;
    var a = document.createElement("a");
    a.href = "#L" + number;
    a.className = "n";
    a.textContent = String(number);
    line.appendChild(a);
    s.pre.appendChild(line);
    s.pre.appendChild(document.createTextNode("\n"));
    return line;
  }

  var source = new EventSource(log.dataset.follow);
  source.addEventListener("chunk", function (e) {
    var chunk = JSON.parse(e.data);
    var s = section(chunk);
    if (chunk.seq <= s.lastSeq) return; // shown already
    s.lastSeq = chunk.seq;
    var pieces = chunk.data.split("\n");
    pieces.forEach(function (text, i) {
      var last = i === pieces.length - 1;
      if (last && text === "") { s.partial = false; return; }
      var line = s.partial && i === 0 ? s.pre.querySelector(".line:last-of-type") : null;
      if (!line) line = newLine(s, chunk.stream === "stderr");
      appendText(line, text, s);
      s.partial = last;
    });
  });
  source.addEventListener("node", function (e) {
    var node = JSON.parse(e.data);
    var row = document.getElementById("node-" + node.node);
    var state = row && row.querySelector("[data-state]");
    if (state) {
      state.textContent = node.status;
      state.className = "state " + node.status;
    }
  });
  source.addEventListener("end", function () {
    source.close();
    window.location.reload();
  });
})();
