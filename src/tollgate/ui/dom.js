// DOM and formatting helpers. Text always goes in as text nodes (never innerHTML), so nothing the API
// returns (names, metadata) can inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let uid = 0;
export function field(labelText, control, hint) {
  const id = control.id || `f${++uid}`;
  control.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, labelText), control,
    hint ? h('span', { class: 'muted small' }, hint) : null);
}

export function select(name, options, value) {
  return h('select', { name }, ...options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
}

export function panel(heading, ...children) {
  return h('section', { class: 'card panel', 'aria-label': typeof heading === 'string' ? heading : undefined },
    typeof heading === 'string' ? h('div', { class: 'panel-head' }, h('h2', {}, heading)) : heading, ...children);
}

export function table(columns, rows, { caption, total } = {}) {
  // columns: [{ label, num?, cell: (row) => node|string, title?: (row) => string }]
  const head = h('tr', {}, ...columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : '' }, c.label)));
  const line = (row, cls) => h('tr', { class: cls },
    ...columns.map((c) => h('td', { class: c.num ? 'num' : '', title: c.title ? c.title(row) : undefined }, c.cell(row))));
  return h('div', { class: 'table-wrap' }, h('table', {},
    caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', {}, head),
    h('tbody', {}, ...rows.map((r) => line(r)), total ? line(total, 'total') : null)));
}

export function badge(text, kind = '') { return h('span', { class: `badge ${kind}` }, text); }

export function empty(title, text) {
  return h('div', { class: 'empty' }, h('h2', {}, title), h('p', {}, text));
}

export const fmt = {
  int: (n) => Number(n || 0).toLocaleString('en-US'),
  usd(value) {
    const n = Number(value || 0);
    if (n === 0) return '$0.00';
    if (Math.abs(n) >= 0.01) return '$' + n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    return '$' + Number(n.toPrecision(2)).toString();
  },
  ms(n) {
    if (n === null || n === undefined) return '–';
    if (n < 1000) return `${n < 10 ? n.toFixed(1) : Math.round(n)} ms`;
    return `${(n / 1000).toFixed(2)} s`;
  },
  pct: (n) => `${(n * 100).toFixed(n > 0 && n < 0.1 ? 1 : 0)}%`,
  bytes(n) {
    const units = ['B', 'KB', 'MB', 'GB'];
    let v = Number(n || 0), i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  },
  // Unix seconds as "2026-11-23 16:05:09 UTC": the same for every reader, whatever their time zone.
  time: (t) => (t ? new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC' : '–'),
  day(iso) {
    const d = new Date(iso + 'T00:00:00Z');
    return d.toLocaleDateString('en-US', { month: 'short', day: 'numeric', timeZone: 'UTC' });
  },
};

export function isoDay(date) { return date.toISOString().slice(0, 10); }

export function daysAgo(n) {
  const d = new Date();
  d.setUTCDate(d.getUTCDate() - n);
  return isoDay(d);
}
