// The compile report's page script (compiler/report/page.py inlines this file after the data).
// It reads the JSON in the script element "report-data", builds each section once, and marks the body when done:
// data-rendered="1", data-layers (rows listed), data-bars (schedule bars drawn), data-lanes, data-render-ms.
// Every name comes from an untrusted binary: text goes into the page through textContent only, and the
// schedule's SVG markup is built from numbers alone.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const ROW = 22;
  const KIND_NAMES = D.schedule.kinds;
  const clock = D.model.hardware.clock_hz;

  // ---------------------------------------------------------------- small helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  function int(n) { return n === null || n === undefined ? "-" : Math.round(n).toLocaleString("en-US"); }
  function fixed(n, digits) { return typeof n === "number" ? n.toFixed(digits) : String(n); }
  function bytes(n) {
    if (n === null || n === undefined) return "-";
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    if (n < 1073741824) return (n / 1048576).toFixed(1) + " MiB";
    return (n / 1073741824).toFixed(2) + " GiB";
  }
  function micros(cycles) { return cycles / clock * 1e6; }
  function percent(x) { return x === null || x === undefined ? "-" : (100 * x).toFixed(1) + " %"; }
  function missing(text) { return el("p", {class: "missing", text: "not recorded: " + text}); }
  function table(head, rows, numeric) {
    const t = el("table");
    const tr = el("tr");
    head.forEach((h, i) => tr.append(el("th", {class: numeric && numeric[i] ? "num" : "", text: h})));
    t.append(el("thead", {}, tr));
    const body = el("tbody");
    for (const row of rows) {
      const r = el("tr");
      row.forEach((cell, i) => r.append(el("td", {class: numeric && numeric[i] ? "num" : ""}, cell)));
      body.append(r);
    }
    t.append(body);
    return t;
  }
  function kv(entries) {
    const dl = el("dl", {class: "kv"});
    for (const [key, value] of entries) {
      dl.append(el("dt", {text: key}),
                el("dd", {text: typeof value === "object" && value !== null ? JSON.stringify(value) : String(value)}));
    }
    return dl;
  }
  function section(id, title, build) {
    const s = el("section", {id: id}, el("h2", {text: title}));
    document.querySelector("main").append(s);
    try {
      build(s);
    } catch (error) {
      report("section " + title + ": " + (error && error.stack || error));
      s.append(el("p", {class: "problem", text: "this section failed to draw: " + error}));
    }
    return s;
  }
  function report(message) {
    const pre = document.getElementById("errors");
    pre.hidden = false;
    pre.textContent += message + "\n";
  }

  const layers = D.layers;
  const S = D.schedule;
  const spans = S.spans;
  const NF = S.fields.length;
  const spanCount = spans.length / NF;
  let selectLayer = function () {};

  // ---------------------------------------------------------------- header
  function header() {
    const m = D.model;
    const title = (m.source || D.file.name) + " — compile report";
    document.title = title;
    const h = document.querySelector("header");
    h.append(el("h1", {text: title}),
             el("div", {class: "sub", text: D.file.name + " · " + int(D.file.bytes) + " bytes · " +
                                            (m.compiler || "compiler not recorded") + " · format " + D.file.format}));
    const sum = D.summary;
    const cards = el("div", {class: "cards"});
    const card = (value, label) => cards.append(el("div", {class: "card"}, el("b", {text: value}),
                                                    el("span", {text: label})));
    card(fixed(sum.hwtime_ms, 3) + " ms", "estimated accelerator time (hwtime)");
    card(percent(sum.efficiency), "of the MAC peak of the clusters used");
    card(sum.device_layers + " / " + sum.cpu_layers, "accelerator / CPU layers");
    card(sum.coverage ? sum.coverage.mac_percent : "-", "of the MACs on the accelerator");
    card(int(sum.instructions), "device instructions per run");
    const p = (m.records.placement || {});
    card((p.mode || "batch") + " " + (p.numcard || 1) + "×" + (p.numclus || 1), "mode, cards × clusters");
    document.querySelector("#top").append(cards);
    if (sum.coverage) document.querySelector("#top").append(el("p", {class: "note", text: sum.coverage.line}));
    for (const problem of D.problems) document.querySelector("#top").append(el("p", {class: "problem", text: problem}));
  }

  // ---------------------------------------------------------------- layers
  function graphSection(s) {
    s.append(el("p", {class: "note", text: "Every layer in program order, grouped by segment: on the accelerator " +
      "(blue; violet: 16-bit; taller: with MACs) or on the CPU (red). Click one to find it in the schedule and " +
      "the table."}));
    const strip = el("div", {class: "strip"});
    let box = null;
    let segment = null;
    layers.forEach((layer, i) => {
      if (layer.segment !== segment) {
        segment = layer.segment;
        box = el("div", {class: "segment"}, el("span", {class: "label", text: segment + " · " +
                                                        (layer.where === "cpu" ? "CPU" : "accelerator")}));
        strip.append(box);
      }
      const kind = layer.where === "cpu" ? "cpu" : layer.precision === "16-bit" ? "wide" : "";
      const chip = el("div", {class: "chip " + kind + (layer.macs ? " mac" : ""), "data-layer": i});
      chip.title = layer.name + " (" + layer.op + ")";
      box.append(chip);
    });
    strip.addEventListener("click", (e) => {
      const i = e.target.dataset && e.target.dataset.layer;
      if (i !== undefined) selectLayer(+i, "strip");
    });
    s.append(strip);
  }

  function layerSection(s) {
    s.append(el("p", {class: "note", text: "An accelerator layer is a fused group of the ONNX nodes listed; its " +
      "cycles are the cycle model's estimate (a layer run by several clusters: the slowest one's), MAC use its " +
      "MACs over the peak of the clusters it ran on, DRAM the bytes its DMA loads read and its stores write. " +
      "Click a column title to sort."}));
    const total = S.total || 1;
    const head = ["#", "layer", "op", "where", "ONNX nodes (fused group)", "cycles", "µs", "share of hwtime",
                  "MAC use", "DRAM read", "DRAM written", "precision", "error share", "notes"];
    const numeric = [1, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 1, 0];
    const keys = [null, "name", "op", "where", null, "cycles", "cycles", "cycles", "use", "read", "written",
                  "precision", "share", null];
    const t = el("table", {id: "layer-table"});
    const tr = el("tr");
    head.forEach((h, i) => tr.append(el("th", {class: (numeric[i] ? "num " : "") + (keys[i] ? "sort" : ""),
                                               "data-col": i, text: h})));
    t.append(el("thead", {}, tr));
    const body = el("tbody");
    const rows = layers.map((layer, i) => layerRow(layer, i, total));
    rows.forEach((r) => body.append(r));
    t.append(body);
    const wrap = el("div", {class: "scroll"}, t);
    s.append(wrap);
    let order = 1;
    tr.addEventListener("click", (e) => {
      const key = keys[+e.target.dataset.col];
      if (!key) return;
      order = -order;
      const value = (layer) => layer[key] === undefined || layer[key] === null ? -Infinity : layer[key];
      const sorted = rows.map((r, i) => i).sort((a, b) => {
        const x = value(layers[a]); const y = value(layers[b]);
        return (x < y ? -1 : x > y ? 1 : a - b) * order;
      });
      sorted.forEach((i) => body.append(rows[i]));
    });
    body.addEventListener("click", (e) => {
      const row = e.target.closest("tr");
      if (row) selectLayer(+row.dataset.layer, "table");
    });
    document.body.dataset.layers = String(rows.length);
    s.append(el("h3", {text: "Nodes on the CPU and why"}));
    if (D.cpu_nodes === null) {
      s.append(missing("this binary has no coverage record (compiled by an older Tessera): compile it again"));
    } else if (D.cpu_nodes.length === 0) {
      s.append(el("p", {class: "note", text: "every node runs on the accelerator"}));
    } else {
      s.append(table(["CPU node", "op", "reason", "rule that refused it"],
                     D.cpu_nodes.map((n) => [n[0], n[1], n[2], n[3] || "-"])));
    }
  }

  function layerRow(layer, i, total) {
    const device = layer.where === "device";
    const r = el("tr", {class: layer.where, "data-layer": i, id: "layer-" + i});
    const cells = [String(i + 1), el("span", {class: "name", text: layer.name}), layer.op,
                   el("span", {class: "tag " + layer.where, text: device ? "accelerator" : "CPU"}),
                   layer.onnx.join(", ")];
    if (device) {
      const width = Math.max(1, Math.round(120 * layer.cycles / total));
      cells.push(int(layer.cycles), fixed(micros(layer.cycles), 2),
                 el("span", {}, el("span", {class: "bar", style: "width:" + width + "px"}),
                    " " + percent(layer.cycles / total)),
                 percent(layer.use), bytes(layer.read), bytes(layer.written),
                 el("span", {class: "tag " + (layer.precision === "16-bit" ? "wide" : "int8"), text: layer.precision}));
    } else {
      cells.push("-", "-", "", "-", "-", "-", "float32");
    }
    cells.push(layer.share === undefined ? "-" : percent(layer.share));
    if (device) {
      const note = el("span", {text: layer.parts.length > 1 ? "on " + layer.parts.length + " clusters" : ""});
      note.title = layer.parts.map((p) => "card " + p[0] + " cluster " + p[1] + (p[2] ? " phase " + p[2] : "") +
                                   ": " + int(p[3]) + " cycles, " + int(p[4]) + " MACs").join("\n");
      cells.push(note);
    } else {
      cells.push(el("div", {}, el("div", {class: "reason", text: layer.reason || "no reason recorded for this " +
                                          "step (a fused CPU group: its nodes are in the table below)"}),
                    layer.rule ? el("div", {class: "rule", text: layer.rule}) : null));
    }
    const numeric = [1, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 1, 0];
    cells.forEach((cell, c) => r.append(el("td", {class: (numeric[c] ? "num" : "") + (c === 4 ? " name" : "")},
                                           cell)));
    return r;
  }

  // ---------------------------------------------------------------- schedule
  function scheduleSection(s) {
    const placement = D.model.records.placement;
    s.append(el("p", {class: "note", text: "The cycle model's schedule of one run: one row per lane (each " +
      "cluster's DMA load, compute and DMA store modules; the host link carries split mode's copies between " +
      "cards). A bar is a run of one layer's instructions of one kind; hover for the layer and cycles, click to " +
      "select the layer. Ctrl + wheel or the buttons zoom; scroll sideways."}));
    if (placement) {
      s.append(el("p", {class: "note", text: "placement: " + (placement.mode || "batch") + " mode, " +
        (placement.numcard || 1) + " card(s) × " + (placement.numclus || 1) + " cluster(s), " +
        (placement.batch || 1) + " image(s) per run" + (placement.mvbatch ? ", mvbatch" : "")}));
    }
    const legend = el("div", {class: "legend"});
    KIND_NAMES.forEach((k, i) => legend.append(el("span", {}, el("i", {style: "background:var(--k" + i + ")"}), k)));
    s.append(legend);
    if (!spanCount) {
      s.append(el("p", {class: "missing", text: "no accelerator work: every layer runs on the CPU"}));
      document.body.dataset.bars = "0";
      document.body.dataset.lanes = "0";
      return;
    }
    const controls = el("div", {class: "controls"});
    const zoomIn = el("button", {type: "button", text: "+"});
    const zoomOut = el("button", {type: "button", text: "−"});
    const fit = el("button", {type: "button", text: "fit"});
    const scaleText = el("span");
    controls.append(zoomOut, zoomIn, fit, scaleText);
    s.append(controls);
    const lanes = el("div", {class: "lanes"}, el("div", {class: "axis", text: "cycles →"}));
    let card = null;
    S.lanes.forEach((lane) => {
      const label = lane[0] < 0 ? lane[2] : "card " + lane[0] + " · cluster " + lane[1] + " · " + lane[2];
      const first = lane[0] + "." + lane[1] !== card;
      card = lane[0] + "." + lane[1];
      lanes.append(el("div", {class: first ? "first" : "", text: label, title: label}));
    });
    const chart = el("div", {class: "chart"});
    const ns = "http://www.w3.org/2000/svg";
    const axis = document.createElementNS(ns, "svg");
    axis.setAttribute("class", "axis");
    axis.setAttribute("height", "24");
    const svg = document.createElementNS(ns, "svg");
    const height = S.lanes.length * ROW;
    svg.setAttribute("height", String(height));
    svg.setAttribute("viewBox", "0 0 " + S.total + " " + height);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("shape-rendering", "crispEdges");
    const parts = [];
    for (let lane = 0; lane < S.lanes.length; lane++) {
      parts.push('<rect class="' + (lane % 2 ? "odd" : "row") + '" x="0" y="' + lane * ROW + '" width="' +
                 S.total + '" height="' + ROW + '"/>');
    }
    for (let i = 0; i < spanCount; i++) {
      const o = i * NF;
      const start = spans[o + 3];
      const width = Math.max(spans[o + 4] - start, 0);
      const alternate = spans[o + 1] % 2 ? " a" : "";
      parts.push('<rect class="k' + (spans[o + 2] | 0) + alternate + '" data-i="' + i + '" x="' + start + '" y="' +
                 (spans[o] * ROW + 4) + '" width="' + width + '" height="' + (ROW - 8) + '"/>');
    }
    parts.push('<g id="highlight"></g>');
    svg.innerHTML = parts.join("");
    chart.append(axis, svg);
    s.append(el("div", {class: "gantt"}, lanes, chart));
    document.body.dataset.bars = String(spanCount);
    document.body.dataset.lanes = String(S.lanes.length);

    let scale = 0;
    function setScale(next, anchor) {
      const view = chart.clientWidth || 1000;
      const fitted = view / S.total;
      const old = scale || fitted;
      scale = Math.min(Math.max(next, fitted), 64);
      const width = Math.max(Math.round(S.total * scale), 1);
      svg.setAttribute("width", String(width));
      axis.setAttribute("width", String(width));
      drawAxis(width);
      const at = anchor === undefined ? chart.scrollLeft + view / 2 : anchor;
      chart.scrollLeft = at / old * scale - (anchor === undefined ? view / 2 : anchor - chart.scrollLeft);
      scaleText.textContent = "1 px = " + fixed(1 / scale, 1) + " cycles · run " + int(S.total) + " cycles = " +
        fixed(micros(S.total), 1) + " µs";
    }
    function drawAxis(width) {
      const cycles = S.total;
      const target = width / 110;
      const raw = cycles / Math.max(target, 1);
      const power = Math.pow(10, Math.floor(Math.log10(raw)));
      const step = [1, 2, 5, 10].map((f) => f * power).find((v) => v >= raw) || raw;
      const out = [];
      for (let c = 0; c <= cycles; c += step) {
        const x = Math.round(c * width / cycles);
        out.push('<line x1="' + x + '" x2="' + x + '" y1="16" y2="24"/>');
        if (x < width - 60) out.push('<text x="' + (x + 2) + '" y="12">' + int(c) + "</text>");
      }
      axis.innerHTML = out.join("");
    }
    zoomIn.addEventListener("click", () => setScale(scale * 2));
    zoomOut.addEventListener("click", () => setScale(scale / 2));
    fit.addEventListener("click", () => setScale(0));
    chart.addEventListener("wheel", (e) => {
      if (!e.ctrlKey) return;
      e.preventDefault();
      const box = chart.getBoundingClientRect();
      setScale(scale * (e.deltaY < 0 ? 1.25 : 0.8), e.clientX - box.left + chart.scrollLeft);
    }, {passive: false});
    setScale(0);

    const tip = document.getElementById("tip");
    svg.addEventListener("mousemove", (e) => {
      const i = e.target.dataset ? e.target.dataset.i : undefined;
      if (i === undefined) { tip.style.display = "none"; return; }
      tip.textContent = spanText(+i);
      tip.style.display = "block";
      tip.style.left = Math.min(e.clientX + 14, window.innerWidth - 430) + "px";
      tip.style.top = (e.clientY + 14) + "px";
    });
    svg.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    svg.addEventListener("click", (e) => {
      const i = e.target.dataset ? e.target.dataset.i : undefined;
      if (i !== undefined && spans[+i * NF + 1] >= 0) selectLayer(spans[+i * NF + 1], "chart");
    });

    const highlight = svg.querySelector("#highlight");
    selectLayer = function (layer, from) {
      document.querySelectorAll("#layer-table tr.selected").forEach((r) => r.classList.remove("selected"));
      const row = document.getElementById("layer-" + layer);
      if (row) {
        row.classList.add("selected");
        const box = row.closest(".scroll");
        if (box && from !== "table") box.scrollTop = row.offsetTop - box.clientHeight / 2;
      }
      const marks = [];
      let first = Infinity;
      for (let i = 0; i < spanCount; i++) {
        const o = i * NF;
        if (spans[o + 1] !== layer) continue;
        first = Math.min(first, spans[o + 3]);
        marks.push('<rect class="hl" x="' + spans[o + 3] + '" y="' + (spans[o] * ROW + 2) + '" width="' +
                   Math.max(spans[o + 4] - spans[o + 3], 1) + '" height="' + (ROW - 4) + '"/>');
      }
      highlight.innerHTML = marks.join("");
      if (from !== "chart" && first < Infinity) chart.scrollLeft = Math.max(first * scale - 40, 0);
      if (from === "table") chart.scrollIntoView({block: "nearest"});
    };
  }

  function spanText(i) {
    const o = i * NF;
    const lane = S.lanes[spans[o]];
    const layer = spans[o + 1] >= 0 ? layers[spans[o + 1]] : null;
    const start = spans[o + 3];
    const end = spans[o + 4];
    return (layer ? layer.name + " (" + layer.op + ")" : "no layer") + "\n" +
      KIND_NAMES[spans[o + 2]] + " on " + (lane[0] < 0 ? lane[2] : "card " + lane[0] + " cluster " + lane[1] +
      " " + lane[2]) + "\ncycles " + int(start) + " – " + int(end) + " (" + int(end - start) + ", " +
      fixed(micros(end - start), 2) + " µs), busy " + int(spans[o + 5]) + "\n" + int(spans[o + 6]) +
      " instruction(s)" + (layer ? "\nONNX: " + layer.onnx.join(", ") : "");
  }

  function activityTable(s) {
    const a = D.activity;
    if (!a.rows.length) return;
    s.append(el("h3", {text: "Cluster activity (DMA overlaps compute where double buffering hides it)"}));
    const rows = a.rows.map((r) => {
      const busy = {};
      a.kinds.forEach((k, i) => { busy[k] = r[2 + i]; });
      const occupancy = a.total ? ((busy.MAC || 0) + (busy.vector || 0)) / a.total : 0;
      return [r[0] + "." + r[1], ...a.kinds.map((k) => int(busy[k])), percent(occupancy)];
    });
    s.append(table(["card.cluster", ...a.kinds, "occupancy (MAC + vector) / run"], rows,
                   [0, ...a.kinds.map(() => 1), 1]));
    const split = D.model.records.split;
    if (Array.isArray(split) && split.length) {
      s.append(el("h3", {text: "Split mode: each layer's axis and each worker's share"}));
      const rows = split.filter((row) => row && typeof row === "object").map((row) => [
        row.layer, row.op, row.across, row.axis,
        (Array.isArray(row.shares) ? row.shares : []).map((sh, i) => Array.isArray(sh) ? i + ": " + sh[0] + "–" +
          sh[1] : null).filter((x) => x).join("  ") + (row.jobs ? " of " + row.jobs + " jobs" : "")]);
      s.append(table(["layer", "op", "across", "axis", "shares (worker: range)"], rows));
    }
  }

  // ---------------------------------------------------------------- quantization fidelity
  function qualitySection(s) {
    const target = D.quality.target;
    const diagnosis = D.quality.diagnosis;
    if (!target && !diagnosis) {
      s.append(missing("compile with target_snr=... (tessera compile --target-snr DB) to record each output's " +
        "SNR, or pass a diagnosis (tessera quantize MODEL --report diag.json, then tessera report MODEL.bin " +
        "--diagnosis diag.json) for each layer's share of the output error"));
      return;
    }
    s.append(el("h3", {text: "Each output part's SNR against float"}));
    const names = new Set([...Object.keys(target ? target.after_db || {} : {}),
                           ...Object.keys(diagnosis ? diagnosis.outputs_snr_db : {})]);
    const db = (v) => v === undefined || v === null ? "-" : fixed(v, 2);
    s.append(table(["output", "before the target (dB)", "recorded (dB)", "± spread", "diagnosis (dB)"],
      [...names].map((n) => [n, db(target && (target.before_db || {})[n]), db(target && (target.after_db || {})[n]),
                             db(target && (target.spread_db || {})[n]), db(diagnosis && diagnosis.outputs_snr_db[n])]),
      [0, 1, 1, 1, 1]));
    if (target) {
      s.append(kv([["target", fixed(target.target_db, 1) + " dB: " + (target.reached ? (target.secure ?
                      "reached" : "reached, by less than the measurement's standard error") : "NOT reached")],
                   ["moved to 16 bits", (target.promoted || []).join(", ") || "none"],
                   ["16-bit share of the MACs", percent(target.macs_16bit) + " (budget " + percent(target.budget) + ")"],
                   ["hwtime before → after", target.hwtime_ms ? fixed(target.hwtime_ms[0], 3) + " → " +
                    fixed(target.hwtime_ms[1], 3) + " ms" : "-"],
                   ["final functions on the host", (target.host_outputs || []).join(", ") || "none"]]));
    } else {
      s.append(missing("the output SNR before and after: compile with target_snr=... to record it"));
    }
    s.append(el("h3", {text: "Each layer's share of the output error"}));
    if (diagnosis) {
      s.append(el("p", {class: "note", text: "from " + diagnosis.file + " (" + diagnosis.samples + " inputs)"}));
      const rows = diagnosis.layers.slice().sort((a, b) => b.share - a.share).map((d) => [
        d.onnx_nodes.join(", ") || d.layer, d.op, d.dtype,
        el("span", {}, el("span", {class: "bar err", style: "width:" + Math.max(1, Math.round(160 * d.share)) +
                                  "px"}), " " + percent(d.share)),
        db(d.output_snr_db), d.causes || "-"]);
      s.append(el("div", {class: "scroll"}, table(["layer (ONNX nodes)", "op", "type", "share", "out SNR alone (dB)",
                                                   "why"], rows, [0, 0, 0, 1, 1, 0])));
    } else if (target && target.left && target.left.length) {
      s.append(el("p", {class: "note", text: "the layers the target would still need in 16 bits, beyond its budget " +
                                             "(the target_snr record)"}));
      s.append(table(["layer", "share of the error", "share of the MACs"],
                     target.left.map((t) => [t[0], percent(t[1]), percent(t[2])]), [0, 1, 1]));
    } else {
      s.append(missing("no layer shares: pass a diagnosis file (tessera quantize MODEL --report diag.json; " +
                       "tessera report MODEL.bin --diagnosis diag.json)"));
    }
  }

  // ---------------------------------------------------------------- metadata
  function metadataSection(s) {
    const m = D.model;
    s.append(kv([["compiler", m.compiler || "-"], ["binary format", D.file.format], ["source model", m.source || "-"],
                 ["layers compiled", m.nlayers === -1 || m.nlayers === null ? "all" : m.nlayers],
                 ["float reference (Run_th)", m.reference ? "included" : "stripped"],
                 ["DRAM", bytes(m.dram_bytes) + " (weights " + bytes(m.weight_bytes) + ")"]]));
    s.append(el("h3", {text: "Interface"}));
    s.append(table(["", "tensor", "type", "shape"], [...m.inputs.map((t) => ["input", t[0], t[1], "[" + t[2] + "]"]),
                                                     ...m.outputs.map((t) => ["output", t[0], t[1], "[" + t[2] + "]"])]));
    s.append(el("h3", {text: "Hardware"}));
    s.append(kv(Object.entries(m.hardware).concat([["MACs per cycle per cluster", m.peak_macs_per_cycle]])));
    s.append(el("h3", {text: "Pre-processing"}));
    s.append(m.records.preprocess ? kv(Object.entries(m.records.preprocess)) :
      missing("compile with --calibration FOLDER of images (and --mean/--std) to record how images become inputs"));
    s.append(el("h3", {text: "Placement"}));
    s.append(m.records.placement ? kv(Object.entries(m.records.placement)) : missing("compiled by an older Tessera"));
    s.append(el("h3", {text: "Quantization options"}));
    s.append(m.records.quantization ? kv(Object.entries(m.records.quantization)) :
      missing("compiled by an older Tessera or built without compile_model"));
    if (m.records.head_grids) {
      s.append(el("h3", {text: "Head grids"}));
      s.append(el("pre", {class: "json", text: JSON.stringify(m.records.head_grids, null, 1)}));
    }
    s.append(el("h3", {text: "Segments"}));
    s.append(table(["segment", "where", "detail"], D.segments.map((g) => [g.name, g.where === "device" ?
      "accelerator" : "CPU", g.where === "device" ? g.streams + " stream(s), " + g.images + " image(s) per run, " +
      g.exchanges + " copy(ies) between cards" : g.steps + " kernel step(s)"])));
    s.append(el("h3", {text: "Sections"}));
    s.append(table(["section", "offset", "length", "checksum"], D.file.sections.map((x) => [x[0], int(x[1]),
      int(x[2]), x[3] ? "ok" : "BAD"]), [0, 1, 1, 0]));
  }

  // ---------------------------------------------------------------- draw
  if (D.format !== 1) report("report data format " + D.format + " is not the one this page draws (1)");
  try { header(); } catch (error) { report("header: " + (error && error.stack || error)); }
  section("graph", "Placement", graphSection);
  const schedule = section("schedule", "Schedule", scheduleSection);
  try { activityTable(schedule); } catch (error) { report("activity: " + (error && error.stack || error)); }
  section("layers", "Layers", layerSection);
  section("quality", "Quantization fidelity", qualitySection);
  section("metadata", "Binary and metadata", metadataSection);
  document.body.dataset.renderMs = performance.now().toFixed(1);
  document.body.dataset.rendered = "1";
})();
