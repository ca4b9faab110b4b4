// Hand-written SVG charts: column, line (with area), multi-line and horizontal bar charts. Each is an <svg role="img">
// with a label, a <title> tooltip per mark, and a visually hidden table of the same numbers for screen readers.
import { h } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const HEIGHT = 220;
const PAD = { top: 14, right: 12, bottom: 28, left: 56 };

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

function title(text) { return s('title', {}, text); }

// A "nice" axis: 0 .. max in 4 steps of 1, 2 or 5 x 10^k.
export function niceTicks(max, count = 4) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((v) => v >= raw);
  const ticks = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  if (ticks[ticks.length - 1] < max) ticks.push(+(ticks[ticks.length - 1] + step).toPrecision(12));
  return ticks;
}

function frame(width, ticks, format) {
  const g = s('g');
  const top = ticks[ticks.length - 1];
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  for (const t of ticks) {
    const y = PAD.top + innerH - (t / top) * innerH;
    g.append(s('line', { class: 'grid-line', x1: PAD.left, x2: width - PAD.right, y1: y, y2: y }));
    g.append(s('text', { class: 'axis-label', x: PAD.left - 8, y: y + 4, 'text-anchor': 'end' }, format(t)));
  }
  return g;
}

function xLabels(g, labels, x, width) {
  const every = Math.max(1, Math.ceil(labels.length / Math.max(1, Math.floor((width - PAD.left) / 64))));
  labels.forEach((label, i) => {
    if ((labels.length - 1 - i) % every === 0) {  // counted back from the newest, which is always labelled
      g.append(s('text', { class: 'axis-label', x: x(i), y: HEIGHT - 8, 'text-anchor': 'middle' }, label));
    }
  });
}

function srTable(caption, labels, series, format) {
  return h('table', { class: 'sr-only' },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, h('th', {}, ''), ...series.map((se) => h('th', {}, se.name)))),
    h('tbody', {}, ...labels.map((label, i) =>
      h('tr', {}, h('th', {}, label), ...series.map((se) => h('td', {}, (se.format || format)(se.values[i])))))));
}

// Re-draws when the container's width changes, so the text stays crisp at any size.
function responsive(container, draw) {
  let last = 0;
  const render = () => {
    const width = Math.max(280, Math.round(container.clientWidth || 640));
    if (width === last) return;
    last = width;
    const svg = draw(width);
    container.querySelector('svg')?.remove();
    container.prepend(svg);
  };
  render();
  if ('ResizeObserver' in window) new ResizeObserver(render).observe(container);
  requestAnimationFrame(render);
}

// Columns per label; several series sit side by side in each slot.
export function columnChart({ label, labels, series, format = String, detail }) {
  const box = h('div', { class: 'chart' });
  const max = Math.max(0, ...series.flatMap((se) => se.values));
  const ticks = niceTicks(max);
  responsive(box, (width) => {
    const svg = s('svg', { viewBox: `0 0 ${width} ${HEIGHT}`, role: 'img', 'aria-label': label, focusable: 'false' });
    svg.append(frame(width, ticks, format));
    const innerW = width - PAD.left - PAD.right;
    const innerH = HEIGHT - PAD.top - PAD.bottom;
    const slot = innerW / Math.max(1, labels.length);
    const barW = Math.max(2, Math.min(36, (slot * 0.7) / series.length));
    const top = ticks[ticks.length - 1];
    const x = (i) => PAD.left + slot * i + slot / 2;
    const marks = s('g');
    labels.forEach((lab, i) => {
      series.forEach((se, j) => {
        const v = se.values[i] || 0;
        const hgt = (v / top) * innerH;
        const bx = x(i) - (barW * series.length) / 2 + j * barW;
        const rect = s('rect', { class: se.cls || 'bar', x: bx, y: PAD.top + innerH - hgt, width: Math.max(1, barW - 2),
          height: Math.max(v > 0 ? 1.5 : 0, hgt), rx: 2 });
        rect.append(title(`${detail ? detail(i) : lab}: ${(se.format || format)(v)} ${se.name}`));
        marks.append(rect);
      });
    });
    svg.append(marks);
    xLabels(svg, labels, x, width);
    return svg;
  });
  box.append(srTable(label, labels, series, format));
  if (series.length > 1) {
    box.append(h('div', { class: 'legend', 'aria-hidden': 'true' },
      ...series.map((se) => h('span', {}, h('i', { class: se.cls === 'bar-2' ? 'bad' : '' }), se.name))));
  }
  return box;
}

// One series as a line over a shaded area, a dot per point.
export function lineChart({ label, labels, values, name, format = String, detail }) {
  const box = h('div', { class: 'chart' });
  const ticks = niceTicks(Math.max(0, ...values));
  responsive(box, (width) => {
    const svg = s('svg', { viewBox: `0 0 ${width} ${HEIGHT}`, role: 'img', 'aria-label': label, focusable: 'false' });
    svg.append(frame(width, ticks, format));
    const innerW = width - PAD.left - PAD.right;
    const innerH = HEIGHT - PAD.top - PAD.bottom;
    const top = ticks[ticks.length - 1];
    const n = values.length;
    const x = (i) => PAD.left + (n === 1 ? innerW / 2 : (innerW * i) / (n - 1));
    const y = (v) => PAD.top + innerH - (v / top) * innerH;
    const pts = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    svg.append(s('path', { class: 'area', d: `M${x(0)},${PAD.top + innerH} L${pts.join(' L')} L${x(n - 1)},${PAD.top + innerH} Z` }));
    svg.append(s('path', { class: 'line', d: `M${pts.join(' L')}` }));
    values.forEach((v, i) => {
      const dot = s('circle', { class: 'dot', cx: x(i), cy: y(v), r: n > 40 ? 2 : 3.5 });
      dot.append(title(`${detail ? detail(i) : labels[i]}: ${format(v)}`));
      svg.append(dot);
    });
    xLabels(svg, labels, x, width);
    return svg;
  });
  box.append(srTable(label, labels, [{ name, values }], format));
  return box;
}

// Several series as lines over the same days (e.g. latency p50 / p95 / mean). A null value is a gap (no
// data that day): the line breaks there and no dot is drawn. Each series' class (line, line-2, line-3)
// sets its colour and dash, and the legend repeats it.
export function multiLineChart({ label, labels, series, format = String, detail }) {
  const box = h('div', { class: 'chart' });
  const ticks = niceTicks(Math.max(0, ...series.flatMap((se) => se.values.filter((v) => v !== null && v !== undefined))));
  responsive(box, (width) => {
    const svg = s('svg', { viewBox: `0 0 ${width} ${HEIGHT}`, role: 'img', 'aria-label': label, focusable: 'false' });
    svg.append(frame(width, ticks, format));
    const innerW = width - PAD.left - PAD.right;
    const innerH = HEIGHT - PAD.top - PAD.bottom;
    const top = ticks[ticks.length - 1];
    const n = labels.length;
    const x = (i) => PAD.left + (n === 1 ? innerW / 2 : (innerW * i) / (n - 1));
    const y = (v) => PAD.top + innerH - (v / top) * innerH;
    series.forEach((se, j) => {
      const cls = se.cls || 'line';
      const g = s('g', { 'data-series': se.name });
      let d = '';
      let pen = false;
      se.values.forEach((v, i) => {
        if (v === null || v === undefined) { pen = false; return; }
        d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
        pen = true;
      });
      if (d) g.append(s('path', { class: cls, d: d.trim() }));
      se.values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        const dot = s('circle', { class: `dot ${cls}-dot`, cx: x(i), cy: y(v), r: n > 40 ? 2 : 3 + (j === 0 ? 0.5 : 0) });
        dot.append(title(`${detail ? detail(i) : labels[i]}: ${se.name} ${format(v)}`));
        g.append(dot);
      });
      svg.append(g);
    });
    xLabels(svg, labels, x, width);
    return svg;
  });
  box.append(srTable(label, labels, series, format));
  box.append(h('div', { class: 'legend', 'aria-hidden': 'true' },
    ...series.map((se) => h('span', {}, h('i', { class: se.cls || 'line' }), se.name))));
  return box;
}

// Horizontal bars, largest first: for "top N by spend".
export function barList({ label, items, format = String }) {
  const box = h('div', { class: 'chart' });
  const rowH = 30;
  const max = Math.max(0, ...items.map((it) => it.value));
  responsive(box, (width) => {
    const height = Math.max(rowH, items.length * rowH) + 4;
    const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label, focusable: 'false' });
    const labelW = Math.min(180, width * 0.34);
    const valueW = 86;
    const barMax = width - labelW - valueW - 12;
    items.forEach((it, i) => {
      const y = i * rowH + 4;
      const w = max > 0 ? Math.max(it.value > 0 ? 2 : 0, (it.value / max) * barMax) : 0;
      const text = it.label.length > 26 ? it.label.slice(0, 25) + '…' : it.label;
      const g = s('g');
      g.append(s('text', { class: 'axis-label', x: 0, y: y + 15 }, text));
      const rect = s('rect', { class: 'bar', x: labelW, y: y + 3, width: w, height: rowH - 12, rx: 3 });
      rect.append(title(`${it.label}: ${format(it.value)}`));
      g.append(rect);
      g.append(s('text', { class: 'value-label', x: labelW + w + 6, y: y + 15 }, format(it.value)));
      svg.append(g);
    });
    return svg;
  });
  box.append(srTable(label, items.map((it) => it.label), [{ name: 'value', values: items.map((it) => it.value) }], format));
  return box;
}
