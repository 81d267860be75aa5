// The run page's live view (chaos web console): reads the run's server-sent events from
// /runs/ID/events and draws, for each SLO, its observed ratio against its objective over time as SVG, with
// fault windows shaded; lists the events; reloads the page when the run finishes so the report shows.
// Plain JavaScript, no library. The numbers come parsed by the server; text is only ever set as text.
(function () {
  'use strict';
  const root = document.getElementById('live');
  if (!root) { return; }
  const NS = 'http://www.w3.org/2000/svg';
  const W = 600, H = 220, PAD_L = 44, PAD_R = 10, PAD_T = 10, PAD_B = 26;
  const charts = document.getElementById('charts');
  const log = document.getElementById('log');
  const status = document.getElementById('live-status');
  const finishedAtLoad = root.dataset.state === 'finished';
  const slos = new Map();   // name -> { objective, points: [[t, value, ok]] , figure, svg }
  const faults = new Map(); // name -> [{ start, end }]
  let lastSeq = 0;
  let maxT = 1;
  let pending = false;

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) { node.setAttribute(k, String(v)); }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function chartFor(name) {
    let s = slos.get(name);
    if (s) { return s; }
    const figure = document.createElement('figure');
    figure.className = 'chart';
    figure.dataset.slo = name;
    const caption = document.createElement('figcaption');
    caption.textContent = name;
    const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img' });
    const title = el('title', {}, `${name}: observed ratio against its objective, per second`);
    svg.appendChild(title);
    figure.appendChild(caption);
    figure.appendChild(svg);
    charts.appendChild(figure);
    s = { objective: null, points: [], figure, svg };
    slos.set(name, s);
    return s;
  }

  function draw() {
    pending = false;
    for (const [name, s] of slos) {
      const svg = s.svg;
      while (svg.childNodes.length > 1) { svg.removeChild(svg.lastChild); }
      const values = s.points.map((p) => p[1]).concat(s.objective === null ? [] : [s.objective]);
      let lo = Math.min(...values), hi = Math.max(...values);
      if (!isFinite(lo) || !isFinite(hi)) { lo = 0; hi = 100; }
      lo = Math.max(0, Math.floor(lo - 1)); hi = Math.min(100, Math.ceil(hi + 0.5));
      if (hi <= lo) { hi = lo + 1; }
      const x = (t) => PAD_L + (t / maxT) * (W - PAD_L - PAD_R);
      const y = (v) => PAD_T + (1 - (v - lo) / (hi - lo)) * (H - PAD_T - PAD_B);
      for (const [fault, windows] of faults) {
        for (const w of windows) {
          const end = w.end === null ? maxT : w.end;
          const rect = el('rect', { class: 'fault', x: x(w.start), y: PAD_T, width: Math.max(1, x(end) - x(w.start)),
            height: H - PAD_T - PAD_B, 'data-fault': fault });
          rect.appendChild(el('title', {}, `${fault}: ${w.start.toFixed(1)}s to ${w.end === null ? 'now' : end.toFixed(1) + 's'}`));
          svg.appendChild(rect);
        }
      }
      for (const v of [lo, hi]) {
        svg.appendChild(el('line', { class: 'grid', x1: PAD_L, x2: W - PAD_R, y1: y(v), y2: y(v) }));
        svg.appendChild(el('text', { class: 'axis', x: PAD_L - 4, y: y(v) + 4, 'text-anchor': 'end' }, `${v}%`));
      }
      svg.appendChild(el('text', { class: 'axis', x: W - PAD_R, y: H - 6, 'text-anchor': 'end' }, `${maxT.toFixed(0)} s`));
      svg.appendChild(el('text', { class: 'axis', x: PAD_L, y: H - 6 }, '0 s'));
      if (s.objective !== null) {
        svg.appendChild(el('line', { class: 'objective', x1: PAD_L, x2: W - PAD_R, y1: y(s.objective), y2: y(s.objective) }));
      }
      if (s.points.length > 0) {
        const d = s.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
        svg.appendChild(el('path', { class: 'series', d }));
        for (const p of s.points) {
          if (p[2] === false) { svg.appendChild(el('circle', { class: 'miss', cx: x(p[0]), cy: y(p[1]), r: 2.5 })); }
        }
      }
      s.figure.dataset.points = String(s.points.length);
      const last = s.points[s.points.length - 1];
      s.figure.querySelector('figcaption').textContent =
        last ? `${name}: ${last[1].toFixed(2)}% (objective ${s.objective}%)` : name;
    }
  }

  function schedule() {
    if (!pending) { pending = true; window.requestAnimationFrame(draw); }
  }

  function onEvent(e) {
    if (e.seq <= lastSeq) { return; }
    lastSeq = e.seq;
    const t = typeof e.at_s === 'number' ? e.at_s : e.at_ms / 1000;
    maxT = Math.max(maxT, t);
    for (const r of e.readings || []) {
      const s = chartFor(r.slo);
      s.objective = r.objective;
      s.points.push([t, r.observed, r.ok]);
    }
    if (e.fault) {
      const windows = faults.get(e.fault.fault) || [];
      if (e.fault.edge === 'injected') { windows.push({ start: t, end: null }); }
      else {
        const open = windows.find((w) => w.end === null);
        if (open) { open.end = t; }
      }
      faults.set(e.fault.fault, windows);
    }
    if (!(e.readings && e.readings.length) && e.line) {
      const li = document.createElement('li');
      li.textContent = e.line;
      if (e.ok === false) { li.className = 'bad'; }
      log.appendChild(li);
    }
    root.dataset.seq = String(lastSeq);
    if (e.kind === 'halt') { status.textContent = `halting: ${e.line}`; }
    schedule();
  }

  const source = new EventSource(root.dataset.events);
  source.addEventListener('open', () => {
    if (!finishedAtLoad) { root.dataset.state = 'live'; status.textContent = 'live'; }
  });
  source.addEventListener('run', (message) => {
    let e;
    try { e = JSON.parse(message.data); } catch (err) { return; }
    onEvent(e);
    if (e.kind === 'finished') {
      source.close();
      root.dataset.state = 'finished';
      status.textContent = `finished: ${e.name}`;
      // The page is rendered again with the report and the final state.
      if (!finishedAtLoad) { window.setTimeout(() => window.location.reload(), 800); }
    }
  });
  source.addEventListener('error', () => {
    if (root.dataset.state !== 'finished') { status.textContent = 'connection lost; retrying…'; }
  });
})();
