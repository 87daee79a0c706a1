// sluice console: four pages over the query service's JSON API. No build
// step and no dependencies but uPlot (vendored). Everything the pages show
// is aggregated or paged by the server; untrusted text (log lines,
// principals) only ever goes into the DOM as text.
'use strict';

(() => {
  // ------------------------------------------------------------------ DOM

  const SVG_NS = 'http://www.w3.org/2000/svg';

  /** Creates an element: attributes, `on…` listeners, children as text or nodes. */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, kids);
    return el;
  }

  function svg(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    append(el, kids);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.setAttribute('class', v);
      else if (k === 'text') el.textContent = v;
      else if (k === 'value' && 'value' in el) el.value = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function append(el, kids) {
    for (const c of kids.flat(Infinity)) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
  }

  function clear(el, ...kids) {
    el.replaceChildren();
    append(el, kids);
    return el;
  }

  // ------------------------------------------------------------------ formatting

  const nf = new Intl.NumberFormat('en-US');
  const fmtInt = (n) => (n == null ? '—' : nf.format(Math.round(n)));
  const fmtPct = (x) => (x == null ? '—' : `${x >= 10 ? x.toFixed(1) : x.toFixed(2)}%`);
  const fmtMs = (x) => (x == null ? '—' : x < 10 ? `${x.toFixed(1)} ms` : `${nf.format(Math.round(x))} ms`);
  function fmtCompact(n) {
    if (n == null) return '';
    const a = Math.abs(n);
    if (a >= 1e9) return `${+(n / 1e9).toFixed(1)}G`;
    if (a >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
    if (a >= 1e4) return `${+(n / 1e3).toFixed(1)}k`;
    return nf.format(n);
  }
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  /** `YYYY-MM-DD HH:MM:SS` in UTC. */
  function fmtTime(t) {
    const d = t instanceof Date ? t : new Date(t);
    if (Number.isNaN(d.getTime())) return '—';
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${fmtClock(d)}`;
  }
  /** `HH:MM:SS` in UTC. */
  function fmtClock(t) {
    const d = t instanceof Date ? t : new Date(t);
    if (Number.isNaN(d.getTime())) return '—';
    return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  }
  /** `Nov 21 14:32:08` in UTC. */
  function fmtShort(t) {
    const d = t instanceof Date ? t : new Date(t);
    if (Number.isNaN(d.getTime())) return '—';
    const mon = d.toLocaleString('en-US', { month: 'short', timeZone: 'UTC' });
    return `${mon} ${d.getUTCDate()} ${fmtClock(d)}`;
  }
  function fmtAgo(t) {
    const ms = Date.now() - new Date(t).getTime();
    if (!Number.isFinite(ms)) return '—';
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.round(s / 60)}m ago`;
    if (s < 172800) return `${Math.round(s / 3600)}h ago`;
    return `${Math.round(s / 86400)}d ago`;
  }
  /** Log line time (epoch µs) as `MM-DD HH:MM:SS.mmm` UTC. */
  function fmtMicros(us) {
    const d = new Date(Math.floor(us / 1000));
    return `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${fmtClock(d)}.${pad(d.getUTCMilliseconds(), 3)}`;
  }
  /** Epoch µs as RFC 3339 with all six fraction digits. */
  function rfc3339Micros(us) {
    const sec = Math.floor(us / 1e6);
    const frac = us - sec * 1e6;
    return `${new Date(sec * 1000).toISOString().slice(0, 19)}.${pad(frac, 6)}Z`;
  }
  const SPANS = { '15m': 900, '1h': 3600, '6h': 21600, '24h': 86400, '2d': 172800, '3d': 259200, '7d': 604800, '30d': 2592000 };
  const spanSeconds = (s) => SPANS[s] || 86400;

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, kind, detail, method, path) {
      super(`${status} ${kind}: ${detail}`);
      this.status = status;
      this.kind = kind;
      this.detail = detail;
      this.method = method;
      this.path = path;
    }
  }

  const TOKEN_KEY = 'sluice.console.token';

  /** One API call; a non-2xx answer becomes an ApiError with the server's reason. */
  async function api(path, { method = 'GET', body, accept = 'application/json', signal } = {}) {
    const headers = { Accept: accept };
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    let payload;
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, { method, headers, body: payload, signal, cache: 'no-store' });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', `the server did not answer (${e.message})`, method, path);
    }
    const text = await res.text();
    if (!res.ok) {
      let kind = res.statusText || 'error';
      let detail = text.trim() || '(empty answer)';
      try {
        const j = JSON.parse(text);
        if (j && typeof j === 'object') {
          kind = j.error || j.errorType || kind;
          detail = j.detail || j.message || j.error || detail;
        }
      } catch (_) { /* Loki's errors are plain text */ }
      throw new ApiError(res.status, kind, detail, method, path);
    }
    if (accept !== 'application/json') return text;
    try {
      return JSON.parse(text);
    } catch (_) {
      throw new ApiError(res.status, 'decode', 'the answer is not JSON', method, path);
    }
  }

  const qs = (obj) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(obj)) if (v != null && v !== '') p.set(k, v);
    return p.toString();
  };

  /** `POST /v1/sql` for the few fixed, aggregated queries the pages need. */
  const sql = (text) => api('/v1/sql', { method: 'POST', body: { sql: text } });

  function errorBox(err) {
    if (!(err instanceof ApiError)) {
      return h('div', { class: 'error', role: 'alert', 'data-test': 'error' },
        h('strong', { text: 'Something went wrong in the console' }),
        h('div', { class: 'detail', text: String(err && err.message ? err.message : err) }));
    }
    const hint = err.status === 401
      ? 'The service wants a bearer token: set one under “Access token” in the sidebar.'
      : err.status === 403
        ? 'The token’s role may not call this endpoint (analyst: attribution, guardrails; operator: logs; SQL sees only the role’s tables).'
        : err.status === 0 ? 'Is sluice serve still running?' : null;
    return h('div', { class: 'error', role: 'alert', 'data-test': 'error', 'data-status': err.status },
      h('strong', { text: err.status ? `HTTP ${err.status} · ${err.kind}` : 'No answer' }),
      h('div', { class: 'detail', text: err.detail }),
      hint && h('div', { class: 'small', text: hint }),
      h('code', { text: `${err.method} ${err.path}` }));
  }

  /** Runs `fn` for the latest call only: an older answer arriving late is dropped. */
  function latest() {
    let n = 0;
    let controller = null;
    return async (fn) => {
      const id = ++n;
      if (controller) controller.abort();
      controller = new AbortController();
      const signal = controller.signal;
      try {
        const out = await fn(signal);
        return id === n ? { ok: true, value: out } : { stale: true };
      } catch (e) {
        if (e && e.name === 'AbortError') return { stale: true };
        return id === n ? { ok: false, error: e } : { stale: true };
      }
    };
  }

  function toast(text, bad = false) {
    const t = h('div', { class: `toast${bad ? ' bad' : ''}`, role: 'status', text });
    document.getElementById('toasts').append(t);
    setTimeout(() => t.remove(), 3500);
  }

  async function copyText(text, button) {
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch (_) {
      const ta = h('textarea', { style: 'position:fixed;left:-9999px' });
      ta.value = text;
      document.body.append(ta);
      ta.select();
      try { ok = document.execCommand('copy'); } catch (_) { ok = false; }
      ta.remove();
    }
    if (button) {
      const before = button.textContent;
      button.textContent = ok ? 'Copied ✓' : 'Copy failed';
      setTimeout(() => { button.textContent = before; }, 1600);
    }
    if (!ok) toast('The browser refused the clipboard', true);
  }

  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = h('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // ------------------------------------------------------------------ widgets

  function card(title, sub, ...body) {
    const head = h('div', { class: 'card-head' }, h('h2', {}, title, h('span', { class: 'sub', text: sub || '' })));
    return { el: h('section', { class: 'card' }, head, ...body), head };
  }

  function select(label, options, value, onchange, attrs = {}) {
    const s = h('select', { ...attrs, onchange: () => onchange(s.value) });
    fillSelect(s, options, value);
    return { field: h('label', { class: 'field' }, label, s), input: s };
  }

  /** options: [value, label] pairs (or plain values). */
  function fillSelect(s, options, value) {
    clear(s, options.map((o) => {
      const [v, l] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, text: l });
    }));
    s.value = value ?? '';
    if (s.selectedIndex < 0 && s.options.length) s.selectedIndex = 0;
  }

  const RANGE_LABELS = {
    '15m': 'Last 15 minutes', '1h': 'Last hour', '6h': 'Last 6 hours', '24h': 'Last 24 hours',
    '2d': 'Last 2 days', '3d': 'Last 3 days', '7d': 'Last 7 days', '30d': 'Last 30 days',
  };
  const RANGE_OPTIONS = (keys) => keys.map((k) => [k, RANGE_LABELS[k] || k]);

  function kpi(label, value, hint, tone, test) {
    return h('div', { class: `card kpi ${tone || ''}`, 'data-test': test },
      h('div', { class: 'label', text: label }),
      h('div', { class: 'value', text: value }),
      hint != null && h('div', { class: 'hint', text: hint, title: hint }));
  }

  /** SQL with keywords, functions and placeholders colored (all as text nodes). */
  function sqlBlock(text) {
    const pre = h('pre', { class: 'sql', 'data-test': 'sql' });
    const re = /(\$\d+)|('(?:[^']|'')*')|\b(SELECT|FROM|WHERE|AND|OR|NOT|GROUP BY|ORDER BY|LIMIT|AS|WITH|JOIN|ON|IS|DISTINCT|OVER|FILTER|WITHIN GROUP|DESC|ASC|NULLS LAST|CASE|WHEN|THEN|ELSE|END|INTERVAL|CAST|IN)\b|\b(count|sum|max|min|avg|percentile_cont|date_bin|first_value|regexp_like|now)\b(?=\()/g;
    let last = 0;
    for (const m of text.matchAll(re)) {
      if (m.index > last) pre.append(text.slice(last, m.index));
      const cls = m[1] ? 'ph' : m[2] ? 'str' : m[3] ? 'kw' : 'fn';
      pre.append(h('span', { class: cls, text: m[0] }));
      last = m.index + m[0].length;
    }
    pre.append(text.slice(last));
    return pre;
  }

  function paramsLine(params) {
    return h('div', { class: 'params', 'data-test': 'sql-params' },
      (params || []).map((v, i) => h('span', {}, h('b', { text: `$${i + 1}` }), ` = ${JSON.stringify(v)}`)));
  }

  /** The SQL with its bound values written in, for pasting into `sluice sql`. */
  function inlineSql(text, params) {
    return text.replace(/\$(\d+)/g, (all, n) => {
      const v = (params || [])[Number(n) - 1];
      if (v === undefined) return all;
      if (typeof v === 'number') return String(v);
      const s = String(v).replace(/'/g, "''");
      return /^\d{4}-\d\d-\d\dT/.test(s) ? `TIMESTAMP '${s}'` : `'${s}'`;
    });
  }

  const PALETTE = ['#4f8cff', '#f0883e', '#3fb950', '#a371f7', '#39c5cf', '#ec6cb9', '#d29922', '#8b97a6'];
  const LEVEL_COLORS = {
    error: '#f85149', fatal: '#f85149', critical: '#f85149', warn: '#d29922', warning: '#d29922',
    info: '#4f8cff', debug: '#8b97a6', trace: '#5d6876', '': '#3a4452',
  };

  /**
   * A uPlot chart that follows its container's width. `series`: [{label,
   * values, color, dash, width, fill}]; `x` in Unix seconds. `bars`: draw
   * bars; `stackedRaw`: the per-series values the legend shows when the
   * drawn ones are cumulative.
   */
  function chart(el, { x, series, height = 240, bars = false, stackedRaw = null, yFormat = fmtCompact }) {
    // Keep the height while redrawing: nothing below the chart may move
    // under the pointer.
    if (el.offsetHeight) el.style.minHeight = `${el.offsetHeight}px`;
    clear(el);
    const grid = { stroke: '#222a34', width: 1 };
    const axis = { stroke: '#8b97a6', grid, ticks: { stroke: '#2a323d', width: 1 }, font: '11px system-ui, sans-serif' };
    const opts = {
      width: Math.max(320, el.clientWidth || 800),
      height,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.08 : 1] } },
      axes: [axis, { ...axis, size: 56, values: (u, vals) => vals.map(yFormat) }],
      cursor: { drag: { x: true, y: false }, points: { size: 6 } },
      legend: { live: true },
      series: [
        { value: (u, v) => (v == null ? '—' : fmtShort(v * 1000)) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color,
          width: s.width ?? (bars ? 0 : 1.6),
          fill: s.fill ?? (bars ? s.color : undefined),
          dash: s.dash,
          points: { show: false },
          spanGaps: true,
          paths: bars && !s.line ? uPlot.paths.bars({ size: [0.86, 60], gap: 1 }) : undefined,
          value: (u, v, si, idx) => {
            const raw = stackedRaw ? stackedRaw[i] : null;
            const val = raw && idx != null ? raw[idx] : v;
            return val == null ? '—' : fmtInt(val);
          },
        })),
      ],
    };
    const plot = new uPlot(opts, [x, ...series.map((s) => s.values)], el);
    const ro = new ResizeObserver(() => {
      const w = el.clientWidth;
      if (w > 0 && Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height });
    });
    ro.observe(el);
    el.dataset.points = String(x.length);
    el.dataset.series = series.map((s) => s.label).join('|');
    return { plot, dispose: () => { ro.disconnect(); plot.destroy(); } };
  }

  /** Sparse `[t, n]` points on a dense grid of `step` seconds over [from, to). */
  function densify(fromS, toS, step, sparse) {
    const start = Math.floor(fromS / step) * step;
    const x = [];
    for (let t = start; t < toS; t += step) x.push(t);
    const index = new Map(x.map((t, i) => [t, i]));
    const fill = (points) => {
      const v = new Array(x.length).fill(0);
      for (const [t, n] of points) {
        const i = index.get(t);
        if (i !== undefined) v[i] = n;
      }
      return v;
    };
    return { x, values: sparse.map(fill) };
  }

  const principalText = (p) => (p == null ? '(none)' : p);
  const principalCell = (p) => h('span', { class: p == null ? 'principal none' : 'principal', text: principalText(p) });

  // ------------------------------------------------------------------ pages

  const disposers = [];
  const onDispose = (fn) => disposers.push(fn);

  function params() {
    const q = location.hash.split('?')[1] || '';
    return new URLSearchParams(q);
  }
  function setParams(page, obj) {
    const s = qs(obj);
    history.replaceState(null, '', `#/${page}${s ? `?${s}` : ''}`);
  }

  function pageHead(title, text, ...right) {
    return h('header', { class: 'page-head' },
      h('div', {}, h('h1', { text: title }), h('p', { text })),
      right.length ? h('div', { class: 'toolbar' }, right) : null);
  }

  // ============================================================ Attribution

  const DIMENSIONS = [['user', 'User'], ['team', 'Team'], ['domain', 'Domain'], ['endpoint', 'Endpoint'], ['caller_type', 'Caller type'], ['service', 'Service']];

  function attributionPage(root) {
    const p = params();
    const st = {
      range: p.get('range') || '24h',
      by: p.get('by') || 'user',
      service: p.get('service') || '',
      endpoint: p.get('endpoint') || '',
      caller_type: p.get('caller_type') || '',
      limit: p.get('limit') || '50',
    };
    let sortKey = null;
    let sortDesc = true;
    let report = null;

    const range = select('Time range', RANGE_OPTIONS(['1h', '6h', '24h', '7d', '30d']), st.range, (v) => { st.range = v; run(); }, { 'data-test': 'attr-range' });
    const service = select('Service', [['', 'All services']], st.service, (v) => { st.service = v; st.endpoint = ''; fillEndpoints(); run(); }, { 'data-test': 'attr-service' });
    const endpoint = select('Endpoint', [['', 'All endpoints']], st.endpoint, (v) => { st.endpoint = v; run(); }, { 'data-test': 'attr-endpoint' });
    const caller = select('Caller type', [['', 'Any caller'], ['internal', 'Internal'], ['external', 'External'], ['unknown', 'Unknown']], st.caller_type, (v) => { st.caller_type = v; run(); }, { 'data-test': 'attr-caller' });
    const by = select('Group by', DIMENSIONS, st.by, (v) => { st.by = v; sortKey = null; run(); }, { 'data-test': 'attr-by' });
    const limit = select('Rows', [['10', 'Top 10'], ['25', 'Top 25'], ['50', 'Top 50'], ['100', 'Top 100'], ['500', 'Top 500']], st.limit, (v) => { st.limit = v; run(); });
    const optionsError = h('div');
    const filters = h('section', { class: 'card' }, h('div', { class: 'filters' }, range.field, service.field, endpoint.field, caller.field, by.field, limit.field), optionsError);

    const kpis = h('div', { class: 'kpis' });
    const chartEl = h('div', { class: 'chart', 'data-test': 'attr-chart' });
    const chartCard = card('Requests over time', 'top 5', h('div', { class: 'card-body' }, chartEl));
    const chartError = h('div');
    chartCard.el.append(chartError);
    const tableBody = h('div', { class: 'card-body flush table-wrap' });
    const csvButton = h('button', { class: 'button small ghost', type: 'button', onclick: () => report && download(`attribution-by-${report.by}.csv`, toCsv(report), 'text/csv') }, '⤓ CSV');
    const tableCard = card('Attribution', '', tableBody);
    tableCard.head.append(csvButton);
    const sqlBody = h('div', { class: 'card-body' });
    const copyButton = h('button', { class: 'button small', type: 'button', 'data-test': 'copy-sql', onclick: () => report && copyText(report.sql, copyButton) }, 'Copy SQL');
    const copyInlined = h('button', { class: 'button small ghost', type: 'button', onclick: () => report && copyText(inlineSql(report.sql, report.params), copyInlined) }, 'Copy with values');
    const sqlCard = card('Generated SQL', 'composed from the filters above · runs on the query service (DataFusion over Iceberg)', sqlBody);
    sqlCard.head.append(h('div', { class: 'toolbar' }, copyInlined, copyButton));

    clear(root,
      pageHead('Attribution', 'Who is driving API load — aggregated live from the platform_event_logs Iceberg table.'),
      filters, kpis, chartCard.el, tableCard.el, sqlCard.el);

    let endpointsByService = new Map();
    function fillEndpoints() {
      const list = st.service ? (endpointsByService.get(st.service) || []) : [...new Set([...endpointsByService.values()].flat())].sort();
      fillSelect(endpoint.input, [['', 'All endpoints'], ...list.map((e) => [e, e])], st.endpoint);
    }
    // Services and endpoints of the last 7 days, for the filter menus: one
    // aggregated query.
    sql(`SELECT service, endpoint, count(*) AS requests
FROM platform.platform_event_logs
WHERE occurred_at >= now() - INTERVAL '7 days' AND endpoint IS NOT NULL
GROUP BY service, endpoint
ORDER BY service, endpoint
LIMIT 2000`).then((out) => {
      endpointsByService = new Map();
      for (const r of out.rows) {
        if (!endpointsByService.has(r.service)) endpointsByService.set(r.service, []);
        endpointsByService.get(r.service).push(r.endpoint);
      }
      fillSelect(service.input, [['', 'All services'], ...[...endpointsByService.keys()].map((s) => [s, s])], st.service);
      fillEndpoints();
    }).catch((e) => clear(optionsError, errorBox(e)));

    const runTable = latest();
    const runChart = latest();
    let chartHandle = null;
    onDispose(() => chartHandle && chartHandle.dispose());

    function filterParams() {
      return { by: st.by, since: st.range, service: st.service, endpoint: st.endpoint, caller_type: st.caller_type };
    }

    async function run() {
      setParams('attribution', st);
      tableCard.el.classList.add('loading');
      chartCard.el.classList.add('loading');
      const dim = DIMENSIONS.find((d) => d[0] === st.by)[1].toLowerCase();
      tableCard.head.querySelector('.sub').textContent = `by ${dim} · last ${st.range}`;
      chartCard.head.querySelector('.sub').textContent = `top 5 by ${dim} · requests per bucket`;
      const [t, c] = await Promise.all([
        runTable((signal) => api(`/v1/attribution?${qs({ ...filterParams(), limit: st.limit })}`, { signal })),
        runChart((signal) => api(`/v1/attribution/series?${qs({ ...filterParams(), top: 5 })}`, { signal })),
      ]);
      if (!t.stale) {
        tableCard.el.classList.remove('loading');
        if (t.ok) {
          report = t.value;
          renderTable();
          renderKpis();
          clear(sqlBody, sqlBlock(report.sql), paramsLine(report.params));
        } else {
          report = null;
          clear(tableBody, errorBox(t.error));
          clear(kpis);
          clear(sqlBody, h('div', { class: 'muted', text: 'No SQL: the request was refused.' }));
        }
      }
      if (!c.stale) {
        chartCard.el.classList.remove('loading');
        clear(chartError);
        if (chartHandle) { chartHandle.dispose(); chartHandle = null; }
        if (c.ok) {
          const s = c.value;
          chartCard.head.querySelector('.sub').textContent = `top ${s.series.length} by ${dim} · requests per ${s.step}`;
          if (!s.series.length) {
            clear(chartEl, h('div', { class: 'empty', text: 'No requests in this range.' }));
          } else {
            const from = Date.parse(s.from) / 1000;
            const to = Date.parse(s.to) / 1000;
            const d = densify(from, to, s.step_seconds, s.series.map((x) => x.points));
            chartHandle = chart(chartEl, {
              x: d.x,
              series: s.series.map((x, i) => ({ label: principalText(x.principal), values: d.values[i], color: PALETTE[i % PALETTE.length] })),
            });
          }
        } else {
          clear(chartEl);
          chartError.append(errorBox(c.error));
        }
      }
    }

    function renderKpis() {
      const rows = report.rows;
      const shown = rows.reduce((a, r) => a + r.requests, 0);
      const failed = rows.reduce((a, r) => a + r.failed, 0);
      const top = rows[0];
      clear(kpis,
        kpi('Requests', fmtInt(report.total), `${fmtShort(report.from)} → ${fmtShort(report.to)} UTC`, '', 'kpi-total'),
        kpi(`Top ${DIMENSIONS.find((d) => d[0] === report.by)[1].toLowerCase()}`, top ? principalText(top.principal) : '—', top ? `${fmtPct(top.pct_of_total)} of all requests` : 'no requests'),
        kpi('Shown', `${fmtInt(rows.length)} rows`, report.total ? `${fmtPct((100 * shown) / report.total)} of requests` : ''),
        kpi('Failure rate (shown)', shown ? fmtPct((100 * failed) / shown) : '—', `${fmtInt(failed)} failed`, shown && failed / shown > 0.05 ? 'warn' : ''));
    }

    const COLUMNS = [
      ['principal', 'Principal', false], ['requests', 'Requests', true], ['pct_of_total', '% of total', true],
      ['success', 'Success', true], ['failed', 'Failed', true], ['last_seen', 'Last seen', false],
      ['p50_latency_ms', 'P50', true], ['p90_latency_ms', 'P90', true], ['p99_latency_ms', 'P99', true],
    ];

    function renderTable() {
      if (!report.rows.length) {
        clear(tableBody, h('div', { class: 'empty', text: 'No requests match these filters in this range.' }));
        return;
      }
      const rows = [...report.rows];
      if (sortKey) {
        rows.sort((a, b) => {
          const x = a[sortKey];
          const y = b[sortKey];
          const c = x == null ? 1 : y == null ? -1 : x < y ? -1 : x > y ? 1 : 0;
          return sortDesc ? -c : c;
        });
      }
      const maxPct = Math.max(1e-9, ...report.rows.map((r) => r.pct_of_total));
      const head = h('tr', {}, COLUMNS.map(([k, label, num]) => h('th', {
        class: `sortable${num ? ' num' : ''}`,
        onclick: () => { sortDesc = sortKey === k ? !sortDesc : true; sortKey = k; renderTable(); },
      }, label, sortKey === k ? (sortDesc ? ' ↓' : ' ↑') : '')));
      const body = rows.map((r) => h('tr', {},
        h('td', {}, principalCell(r.principal)),
        h('td', { class: 'num' }, fmtInt(r.requests)),
        h('td', { class: 'num' }, h('div', { class: 'share' }, fmtPct(r.pct_of_total),
          h('span', { class: 'bar' }, h('span', { style: `width:${Math.min(100, (100 * r.pct_of_total) / maxPct).toFixed(1)}%` })))),
        h('td', { class: 'num' }, fmtInt(r.success)),
        h('td', { class: 'num', style: r.failed ? 'color:#ff8b84' : '' }, fmtInt(r.failed)),
        h('td', { class: 'nowrap', title: fmtTime(r.last_seen) }, fmtAgo(r.last_seen), h('span', { class: 'faint small', text: ` · ${fmtClock(r.last_seen)}` })),
        h('td', { class: 'num' }, fmtMs(r.p50_latency_ms)),
        h('td', { class: 'num' }, fmtMs(r.p90_latency_ms)),
        h('td', { class: 'num' }, fmtMs(r.p99_latency_ms))));
      clear(tableBody, h('div', { class: 'scroll-y' }, h('table', { class: 'data', 'data-test': 'attr-table' }, h('thead', {}, head), h('tbody', {}, body))));
    }

    function toCsv(r) {
      const esc = (v) => (v == null ? '' : /[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
      const keys = COLUMNS.map((c) => c[0]);
      return [keys.join(','), ...r.rows.map((row) => keys.map((k) => esc(row[k])).join(','))].join('\n') + '\n';
    }

    run();
  }

  // ============================================================ Logs

  /** A LogQL string literal. */
  const logqlString = (s) => `"${String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

  function logsPage(root) {
    const p = params();
    const st = {
      q: p.get('q') || '',
      namespace: p.get('namespace') || '',
      pod: p.get('pod') || '',
      container: p.get('container') || '',
      restart: p.get('restart') || '',
      level: p.get('level') || '',
      range: p.get('range') || '24h',
      context: p.get('context') || '5',
    };
    const openInstance = p.get('instance');

    const search = h('input', { class: 'search', type: 'search', value: st.q, placeholder: 'OOMKilled   "out of memory"   level:error AND NOT debug   req-8c1f', 'aria-label': 'Search logs', 'data-test': 'log-query', spellcheck: 'false' });
    const go = h('button', { class: 'button primary', type: 'submit', 'data-test': 'log-search' }, 'Search');
    const form = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); st.q = search.value.trim(); run(); } },
      h('label', { class: 'field wide' }, 'Search (terms, "phrases", AND / OR / NOT, field:value — empty for every line)', search), go);
    const ns = select('Namespace', [['', 'All namespaces']], st.namespace, (v) => { st.namespace = v; st.pod = ''; st.container = ''; st.restart = ''; loadPods(); run(); }, { 'data-test': 'log-namespace' });
    const pod = select('Pod', [['', 'All pods']], st.pod, (v) => { st.pod = v; st.container = ''; st.restart = ''; loadContainers(); run(); }, { 'data-test': 'log-pod' });
    const container = select('Container', [['', 'All containers']], st.container, (v) => { st.container = v; run(); }, { 'data-test': 'log-container' });
    const restart = select('Restart', [['', 'Any instance']], st.restart, (v) => { st.restart = v; run(); }, { 'data-test': 'log-restart' });
    const level = select('Level', [['', 'Any level']], st.level, (v) => { st.level = v; run(); }, { 'data-test': 'log-level' });
    const range = select('Time', RANGE_OPTIONS(['15m', '1h', '6h', '24h', '2d', '7d', '30d']), st.range, (v) => { st.range = v; loadLabels(); run(); }, { 'data-test': 'log-range' });
    const ctx = select('Context lines', [['3', '± 3'], ['5', '± 5'], ['10', '± 10'], ['25', '± 25']], st.context, (v) => { st.context = v; setParams('logs', st); }, { 'data-test': 'log-context' });
    const instancesButton = h('button', { class: 'button', type: 'button', 'data-test': 'open-instances', disabled: !st.pod, onclick: () => st.pod && openInstances(st.namespace, st.pod, null) }, '⟲ Instances');
    const liveButton = h('button', {
      class: 'button', type: 'button', 'data-test': 'log-live', 'aria-pressed': 'false',
      title: 'Follow the selected lines as the pipeline reads them (before they are indexed), across container restarts',
      onclick: () => (live ? stopLive() : startLive()),
    }, '● Live');
    const labelsError = h('div');
    const filterCard = h('section', { class: 'card' }, form,
      h('div', { class: 'filters', style: 'padding-top:0' }, ns.field, pod.field, container.field, restart.field, level.field, range.field, ctx.field, instancesButton, liveButton), labelsError);

    const volumeEl = h('div', { class: 'chart', 'data-test': 'log-volume' });
    const volumeCaption = h('div', { class: 'chart-caption', 'data-test': 'log-volume-logql' });
    const volumeError = h('div');
    const volumeCard = card('Log volume', '', h('div', { class: 'card-body' }, volumeEl, volumeCaption), volumeError);

    const resultsBody = h('div', { class: 'card-body flush' });
    const resultsCard = card('Results', '', resultsBody);
    resultsCard.head.querySelector('.sub').setAttribute('data-test', 'log-count');

    clear(root,
      pageHead('Logs', 'Search every container instance’s lines — restarted, OOMKilled and deleted ones included — from the tantivy index beside the tables.'),
      filterCard, volumeCard.el, resultsCard.el);

    // ---- filter menus (label values from the index, over the time range)
    const window_ = () => {
      const end = new Date();
      const start = new Date(end.getTime() - spanSeconds(st.range) * 1000);
      return { start: start.toISOString(), end: end.toISOString() };
    };
    async function labelValues(name, selector) {
      const out = await api(`/loki/api/v1/label/${name}/values?${qs({ ...window_(), query: selector })}`);
      return out.data || [];
    }
    function selectorOf(obj) {
      const parts = Object.entries(obj).filter(([, v]) => v !== '' && v != null).map(([k, v]) => `${k}=${logqlString(v)}`);
      return parts.length ? `{${parts.join(', ')}}` : null;
    }
    async function loadLabels() {
      clear(labelsError);
      try {
        const [namespaces, levels] = await Promise.all([labelValues('namespace'), labelValues('level')]);
        fillSelect(ns.input, [['', 'All namespaces'], ...namespaces.map((v) => [v, v])], st.namespace);
        fillSelect(level.input, [['', 'Any level'], ...levels.map((v) => [v, v])], st.level);
        await loadPods();
      } catch (e) {
        labelsError.append(errorBox(e));
      }
    }
    async function loadPods() {
      instancesButton.disabled = !st.pod;
      try {
        const pods = st.namespace ? await labelValues('pod', selectorOf({ namespace: st.namespace })) : [];
        fillSelect(pod.input, [['', st.namespace ? 'All pods' : 'Choose a namespace'], ...pods.map((v) => [v, v])], st.pod);
        await loadContainers();
      } catch (e) {
        clear(labelsError, errorBox(e));
      }
    }
    async function loadContainers() {
      instancesButton.disabled = !st.pod;
      try {
        const sel = selectorOf({ namespace: st.namespace, pod: st.pod });
        const containers = st.namespace && st.pod ? await labelValues('container', sel) : [];
        fillSelect(container.input, [['', 'All containers'], ...containers.map((v) => [v, v])], st.container);
        let instances = [];
        if (st.namespace && st.pod) {
          const r = await api(`/v1/logs/restarts?${qs({ namespace: st.namespace, pod: st.pod })}`);
          instances = r.instances;
        }
        const seen = new Map();
        for (const i of instances) {
          const label = `#${i.restart}${i.termination ? ` · ${i.termination}` : ''}`;
          if (!seen.has(i.restart) || i.termination) seen.set(i.restart, label);
        }
        fillSelect(restart.input, [['', 'Any instance'], ...[...seen.entries()].sort((a, b) => a[0] - b[0]).map(([n, l]) => [String(n), l])], st.restart);
      } catch (e) {
        clear(labelsError, errorBox(e));
      }
    }

    // ---- search
    const runSearch = latest();
    const runVolume = latest();
    let volumeHandle = null;
    onDispose(() => volumeHandle && volumeHandle.dispose());
    let hits = [];
    let nextCursor = null;
    let total = 0;

    function searchParams(extra) {
      return {
        q: st.q, namespace: st.namespace, pod: st.pod, container: st.container, restart: st.restart,
        level: st.level, from: st.range, limit: 50, ...extra,
      };
    }

    // ---- live tail (/v1/logs/tail: NDJSON events, the same stream as `sluice logs tail -f`)
    let live = null;
    onDispose(() => stopLive());
    /** Rows kept on screen while live; older ones leave from the top. */
    const LIVE_ROWS = 2000;

    function stopLive() {
      if (!live) return;
      live.abort.abort();
      live = null;
      liveButton.setAttribute('aria-pressed', 'false');
      liveButton.classList.remove('primary');
      resultsCard.el.dataset.live = 'off';
    }

    function liveNotice(text, tone) {
      return h('div', { class: `log-notice ${tone || ''}`, 'data-test': 'live-notice', text });
    }

    function ending(t) {
      return t.exit_code != null ? `${t.reason}, exit code ${t.exit_code}` : t.reason;
    }

    async function startLive() {
      stopLive();
      const abort = new AbortController();
      live = { abort };
      const mine = live;
      liveButton.setAttribute('aria-pressed', 'true');
      liveButton.classList.add('primary');
      resultsCard.el.dataset.live = 'on';
      const list = h('div', { class: 'log-list live', 'data-test': 'live-results', 'data-pod': st.pod });
      let shown = 0;
      const caption = () => {
        resultsCard.head.querySelector('.sub').textContent =
          `Live · ${fmtInt(shown)} line${shown === 1 ? '' : 's'} · oldest first · ${st.pod ? `${st.pod}${st.container ? `/${st.container}` : ''}` : st.namespace || 'every namespace'}`;
      };
      clear(resultsBody, list);
      caption();
      const terms = highlightTerms(st.q);
      // Follows the newest line unless the reader scrolled up.
      const add = (el) => {
        const follow = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
        list.append(el);
        while (list.childElementCount > LIVE_ROWS) list.firstElementChild.remove();
        if (follow) list.scrollTop = list.scrollHeight;
      };
      const onEvent = (e) => {
        switch (e.type) {
          case 'lines':
            for (const l of e.lines) add(lineRow(l, e.backfill ? 'ctx' : 'live-line', terms));
            shown += e.lines.length;
            if (e.backfill) add(liveNotice(`── live from here (${fmtInt(e.lines.length)} earlier line${e.lines.length === 1 ? '' : 's'} above)`, 'seam'));
            caption();
            break;
          case 'restart':
            add(liveNotice(`⟲ ${e.pod}/${e.container}: instance #${e.restart} started${e.previous ? ` — the previous one ended: ${ending(e.previous)}` : ''}`, 'restart'));
            break;
          case 'ended':
            add(liveNotice(`■ ${e.pod}/${e.container}${e.restart != null ? ` #${e.restart}` : ''} ended: ${ending(e)}`, 'ended'));
            break;
          case 'dropped':
            add(liveNotice(`${fmtInt(e.count)} lines dropped: this page did not keep up`, 'warn'));
            break;
          case 'behind':
            add(liveNotice(`the server fell behind the stream: ${fmtInt(e.skipped_messages)} messages skipped`, 'warn'));
            break;
          case 'closed':
            add(liveNotice(`the server closed the live tail: ${e.reason}`, 'warn'));
            break;
          default:
        }
      };
      const query = { q: st.q, namespace: st.namespace, pod: st.pod, container: st.container, restart: st.restart, level: st.level, lines: 50 };
      const headers = { Accept: 'application/x-ndjson' };
      const token = localStorage.getItem(TOKEN_KEY);
      if (token) headers.Authorization = `Bearer ${token}`;
      try {
        const res = await fetch(`/v1/logs/tail?${qs(query)}`, { headers, signal: abort.signal, cache: 'no-store' });
        if (!res.ok) {
          const text = await res.text();
          let detail = text.trim();
          try { detail = JSON.parse(text).detail || detail; } catch (_) { /* plain text */ }
          throw new ApiError(res.status, res.statusText, detail, 'GET', '/v1/logs/tail');
        }
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line.trim()) onEvent(JSON.parse(line));
          }
        }
        if (live === mine) add(liveNotice('the live tail ended (the server stopped?)', 'warn'));
      } catch (e) {
        if (e.name === 'AbortError') return;
        if (live === mine) resultsBody.append(errorBox(e));
      }
      if (live === mine) stopLive();
    }

    async function run() {
      if (live) {
        setParams('logs', st);
        volume();
        startLive();
        return;
      }
      setParams('logs', st);
      resultsCard.el.classList.add('loading');
      const [r] = await Promise.all([
        runSearch((signal) => api(`/v1/logs/search?${qs(searchParams({}))}`, { signal })),
        volume(),
      ]);
      if (r.stale) return;
      resultsCard.el.classList.remove('loading');
      if (!r.ok) {
        hits = [];
        clear(resultsBody, errorBox(r.error));
        resultsCard.head.querySelector('.sub').textContent = '';
        return;
      }
      hits = r.value.hits;
      total = r.value.total;
      nextCursor = r.value.next_cursor;
      renderResults(r.value.splits_searched);
    }

    async function more(button) {
      if (!nextCursor) return;
      button.disabled = true;
      try {
        const r = await api(`/v1/logs/search?${qs(searchParams({ cursor: nextCursor }))}`);
        hits = hits.concat(r.hits);
        nextCursor = r.next_cursor;
        renderResults(r.splits_searched);
      } catch (e) {
        resultsBody.append(errorBox(e));
        button.disabled = false;
      }
    }

    function renderResults(splits) {
      resultsCard.head.querySelector('.sub').textContent =
        `${fmtInt(total)} matching line${total === 1 ? '' : 's'} · newest first · ${fmtInt(hits.length)} shown · ${splits} split${splits === 1 ? '' : 's'} searched`;
      resultsCard.el.dataset.total = String(total);
      if (!hits.length) {
        clear(resultsBody, h('div', { class: 'empty', 'data-test': 'log-empty', text: 'No line matches. Widen the time range or loosen the search.' }));
        return;
      }
      const terms = highlightTerms(st.q);
      const list = h('div', { class: 'log-list', 'data-test': 'log-results', 'data-q': st.q, 'data-pod': st.pod }, hits.map((hit) => hitRow(hit, terms)));
      clear(resultsBody, list,
        nextCursor && h('div', { class: 'results-foot' }, h('button', { class: 'button', type: 'button', onclick: (e) => more(e.currentTarget) }, 'Load 50 more')));
    }

    function levelChip(lvl) {
      const l = (lvl || '').toLowerCase();
      const tone = { error: 'red', fatal: 'red', critical: 'red', warn: 'amber', warning: 'amber', info: 'blue' }[l] || '';
      return h('span', { class: `chip level ${tone}`, text: l || '—' });
    }

    function lineRow(line, cls, terms, extra) {
      const test = { ctx: 'context-line', 'live-line': 'live-line' }[cls] || 'log-hit';
      return h('div', { class: `log-row ${cls}`, 'data-test': test, 'data-line-id': line.line_id, 'data-restart': String(line.restart) },
        h('span', { class: 'ts', title: rfc3339Micros(line.ts), text: fmtMicros(line.ts) }),
        levelChip(line.level),
        h('span', { class: 'src' },
          h('span', {
            class: 'restart-badge', 'data-test': 'restart-badge', role: 'button', tabindex: '0',
            title: `Container instance #${line.restart} of ${line.container} — open the pod's instances`,
            onclick: () => openInstances(line.namespace, line.pod, { container: line.container, restart: line.restart }),
          }, `#${line.restart}`),
          h('span', { class: 'name', title: `${line.namespace}/${line.pod}/${line.container} · ${line.stream}${line.node ? ` · node ${line.node}` : ''}`, text: `${line.pod}/${line.container}` })),
        highlighted(line.message, terms),
        extra || h('span'));
    }

    function hitRow(hit, terms) {
      const wrap = h('div', { class: 'hit' });
      const expand = h('button', { class: 'button small ghost', type: 'button', 'data-test': 'expand-context', title: 'Lines around this one in the same container instance' }, `± ${st.context}`);
      const row = lineRow(hit, 'hit-line', terms, expand);
      wrap.append(row);
      let expanded = null;
      expand.addEventListener('click', async () => {
        if (expanded) {
          wrap.replaceChildren(row);
          expanded = null;
          expand.textContent = `± ${st.context}`;
          return;
        }
        expand.disabled = true;
        try {
          const ctx = await contextOf(hit, Number(st.context));
          const plural = (n) => `${n} line${n === 1 ? '' : 's'}`;
          expanded = h('div', { class: 'context-block', 'data-test': 'context-block' },
            h('div', { class: 'context-label', text: `${plural(ctx.before.length)} before · container instance #${hit.restart}` }),
            ctx.before.map((l) => lineRow(l, 'ctx', [])),
            row,
            h('div', { class: 'context-label', text: `${plural(ctx.after.length)} after` }),
            ctx.after.map((l) => lineRow(l, 'ctx', [])));
          wrap.replaceChildren(expanded);
          expand.textContent = 'collapse';
        } catch (e) {
          wrap.append(errorBox(e));
        } finally {
          expand.disabled = false;
        }
      });
      return wrap;
    }

    /** The hit again, alone, with `context=N` (same query, its own instance and instant). */
    async function contextOf(hit, n) {
      const r = await api(`/v1/logs/search?${qs({
        q: st.q, namespace: hit.namespace, pod: hit.pod, container: hit.container, restart: hit.restart,
        from: rfc3339Micros(hit.ts), to: rfc3339Micros(hit.ts + 1), limit: 100, context: n,
      })}`);
      const same = r.hits.find((x) => x.line_id === hit.line_id) || r.hits[0];
      if (!same || !same.context) return { before: [], after: [] };
      return same.context;
    }

    /** Words of a plain query, to mark in the lines (display only). */
    function highlightTerms(q) {
      if (!q || q === '*') return [];
      return [...q.matchAll(/"([^"]+)"|([^\s()"]+)/g)]
        .map((m) => m[1] || m[2])
        .filter((w) => w && !/^(AND|OR|NOT)$/.test(w) && !w.startsWith('-') && !w.includes(':'))
        .map((w) => w.toLowerCase());
    }

    function highlighted(text, terms) {
      const el = h('span', { class: 'msg' });
      if (!terms.length) { el.textContent = text; return el; }
      const lower = text.toLowerCase();
      let i = 0;
      while (i < text.length) {
        let best = -1;
        let len = 0;
        for (const t of terms) {
          const j = lower.indexOf(t, i);
          if (j >= 0 && (best < 0 || j < best)) { best = j; len = t.length; }
        }
        if (best < 0) break;
        el.append(text.slice(i, best), h('mark', { text: text.slice(best, best + len) }));
        i = best + len;
      }
      el.append(text.slice(i));
      return el;
    }

    // ---- volume histogram (Loki API: count_over_time by level)
    async function volume() {
      const span = spanSeconds(st.range);
      const steps = [60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400];
      const step = steps.find((s) => span / s <= 120) || 86400;
      const sel = selectorOf({ namespace: st.namespace, pod: st.pod, container: st.container, restart: st.restart, level: st.level }) || '{namespace=~".+"}';
      const words = /^[^\s"():]+( [^\s"():]+)*$/.test(st.q) && st.q !== '*' && !/(^|\s)(AND|OR|NOT)(\s|$)|(^|\s)-/.test(st.q)
        ? st.q.split(' ') : [];
      const filters = words.map((w) => ` |= ${logqlString(w)}`).join('');
      const stepText = step >= 3600 ? `${step / 3600}h` : `${step / 60}m`;
      const logql = `sum by (level) (count_over_time(${sel}${filters} [${stepText}]))`;
      const end = Math.ceil(Date.now() / 1000 / step) * step;
      // Each point counts the step before it: the first one ends a step in.
      const start = end - span + step;
      volumeCard.el.classList.add('loading');
      const r = await runVolume((signal) => api(`/loki/api/v1/query_range?${qs({ query: logql, start: String(start), end: String(end), step: stepText })}`, { signal }));
      if (r.stale) return;
      volumeCard.el.classList.remove('loading');
      clear(volumeError);
      if (volumeHandle) { volumeHandle.dispose(); volumeHandle = null; }
      const note = st.q && !words.length && st.q !== '*'
        ? ' · the search uses operators or fields, so the volume shows every line of the selected streams'
        : words.length ? ' · line filters are case-sensitive substrings, the search matches whole words in any case' : '';
      volumeCaption.textContent = `LogQL: ${logql}${note}`;
      if (!r.ok) {
        clear(volumeEl);
        volumeError.append(errorBox(r.error));
        return;
      }
      const x = [];
      for (let t = start; t <= end; t += step) x.push(t);
      const index = new Map(x.map((t, i) => [t, i]));
      const order = ['error', 'warn', 'warning', 'info', 'debug', 'trace'];
      const rank = (l) => { const i = order.indexOf(l); return i < 0 ? order.length : i; };
      const byLevel = (r.value.data.result || [])
        .map((s) => ({ level: s.metric.level || '', values: s.values }))
        .sort((a, b) => rank(a.level) - rank(b.level));
      const raw = byLevel.map((s) => {
        const v = new Array(x.length).fill(0);
        for (const [t, n] of s.values) {
          const i = index.get(Math.round(Number(t)));
          if (i !== undefined) v[i] = Number(n);
        }
        return v;
      });
      const sum = raw.reduce((a, v) => a + v.reduce((x2, y) => x2 + y, 0), 0);
      volumeEl.dataset.total = String(sum);
      volumeCard.head.querySelector('.sub').textContent = `${fmtInt(sum)} line${sum === 1 ? '' : 's'} · per ${stepText} · by level`;
      if (!byLevel.length || !sum) {
        clear(volumeEl, h('div', { class: 'empty', text: 'No lines in this range.' }));
        return;
      }
      // Stacked: cumulative sums, drawn widest first so each level shows on top.
      const cum = [];
      raw.forEach((v, i) => cum.push(v.map((n, j) => n + (i ? cum[i - 1][j] : 0))));
      const order2 = cum.map((_, i) => i).reverse();
      volumeHandle = chart(volumeEl, {
        x,
        bars: true,
        height: 150,
        series: order2.map((i) => ({ label: byLevel[i].level || 'no level', values: cum[i], color: LEVEL_COLORS[byLevel[i].level] || PALETTE[i % PALETTE.length] })),
        stackedRaw: order2.map((i) => raw[i]),
      });
    }

    // ---- per-instance view
    let drawer = null;
    function closeDrawer() {
      if (drawer) { drawer.remove(); drawer = null; }
    }
    const onKey = (e) => { if (e.key === 'Escape') closeDrawer(); };
    document.addEventListener('keydown', onKey);
    onDispose(() => { closeDrawer(); document.removeEventListener('keydown', onKey); });

    async function openInstances(namespace, podName, focus) {
      closeDrawer();
      const list = h('div', { class: 'instances', 'data-test': 'instances' }, h('div', { class: 'muted' }, h('span', { class: 'spinner' }), ' Loading instances…'));
      const linesHead = h('div', { class: 'instance-lines-head hidden', 'data-test': 'instance-title' });
      const lines = h('div', { class: 'log-list compact instance-lines', 'data-test': 'instance-lines' });
      const panel = h('aside', { class: 'drawer', role: 'dialog', 'aria-label': `Container instances of ${podName}`, 'data-test': 'instance-view' },
        h('div', { class: 'drawer-head' },
          h('div', {}, h('h2', { text: podName }), h('div', { class: 'muted small', text: `namespace ${namespace} · every container instance, how it ended, and its last lines` })),
          h('button', { class: 'icon-button', type: 'button', 'aria-label': 'Close', onclick: closeDrawer }, '✕')),
        h('div', { class: 'drawer-body' }, list, linesHead, lines));
      drawer = h('div', {}, h('div', { class: 'drawer-backdrop', onclick: closeDrawer }), panel);
      document.body.append(drawer);
      let report;
      try {
        report = await api(`/v1/logs/restarts?${qs({ namespace, pod: podName })}`);
      } catch (e) {
        clear(list, errorBox(e));
        return;
      }
      if (!report.instances.length) {
        clear(list, h('div', { class: 'empty', text: 'No lines of this pod in the tables.' }));
        return;
      }
      const newest = new Map();
      for (const i of report.instances) newest.set(i.container, Math.max(newest.get(i.container) ?? -1, i.restart));
      const items = report.instances.slice().sort((a, b) => (a.container === b.container ? b.restart - a.restart : a.container < b.container ? -1 : 1));
      let selected = null;
      const nodes = items.map((inst) => {
        const title = instanceTitle(inst, newest.get(inst.container) === inst.restart);
        const node = h('div', { class: 'instance', role: 'button', tabindex: '0', 'data-test': 'instance-item', 'data-restart': inst.restart, 'data-termination': inst.termination || '' },
          h('span', { class: 'title', text: title }),
          h('span', {}, inst.termination
            ? h('span', { class: `chip ${inst.termination === 'OOMKilled' ? 'red' : inst.termination === 'Completed' ? 'green' : 'amber'}`, text: `${inst.termination}${inst.exit_code != null ? ` · exit ${inst.exit_code}` : ''}` })
            : h('span', { class: 'chip green', text: newest.get(inst.container) === inst.restart ? 'current' : 'no termination recorded' })),
          h('span', { class: 'meta', text: `${inst.container} · ${fmtInt(inst.lines)} lines · ${inst.first_line ? fmtShort(inst.first_line) : '—'} → ${inst.last_line ? fmtShort(inst.last_line) : '—'} UTC` }));
        const pick = () => {
          if (selected) selected.classList.remove('selected');
          selected = node;
          node.classList.add('selected');
          showLines(inst, title);
        };
        node.addEventListener('click', pick);
        node.addEventListener('keydown', (e) => { if (e.key === 'Enter') pick(); });
        node.pick = pick;
        return node;
      });
      clear(list, nodes);
      const want = focus
        ? nodes.find((n, i) => items[i].restart === focus.restart && (!focus.container || items[i].container === focus.container))
        : nodes.find((n, i) => items[i].termination) || nodes[0];
      if (want) want.pick();

      async function showLines(inst, title) {
        linesHead.classList.remove('hidden');
        clear(linesHead, h('strong', { text: title }), h('span', { class: 'muted', text: ' · last lines, oldest first — the end of the instance is at the bottom' }));
        clear(lines, h('div', { class: 'empty' }, h('span', { class: 'spinner' }), ' Loading…'));
        try {
          const r = await api(`/v1/logs/search?${qs({ q: '*', namespace, pod: podName, container: inst.container, restart: inst.restart, order: 'desc', limit: 100 })}`);
          const rows = r.hits.slice().reverse();
          clear(lines, rows.length ? rows.map((l) => lineRow(l, 'ctx', [])) : h('div', { class: 'empty', text: 'This instance has no indexed lines yet.' }));
          lines.scrollTop = lines.scrollHeight;
          lines.dataset.count = String(rows.length);
        } catch (e) {
          clear(lines, errorBox(e));
        }
      }
    }

    loadLabels();
    run();
    if (openInstance != null && st.namespace && st.pod) {
      openInstances(st.namespace, st.pod, { restart: Number(openInstance) });
    }
  }

  /** "instance #6 — OOMKilled at 14:32:08". */
  function instanceTitle(inst, isNewest) {
    if (inst.termination) {
      return `instance #${inst.restart} — ${inst.termination} at ${inst.terminated_at ? fmtClock(inst.terminated_at) : '?'}`;
    }
    return `instance #${inst.restart} — ${isNewest ? 'running' : 'ended'}`;
  }

  // ============================================================ Guardrails

  function guardrailsPage(root) {
    const p = params();
    const st = {
      by: p.get('by') || 'user',
      window: p.get('window') || '1m',
      range: p.get('range') || '7d',
      service: p.get('service') || '',
    };
    let report = null;
    let selected = null; // a PeakRow
    let simulation = null;

    const by = select('Cap per', [['user', 'User'], ['team', 'Team'], ['domain', 'Domain'], ['endpoint', 'Endpoint']], st.by, (v) => { st.by = v; run(); }, { 'data-test': 'guard-by' });
    const win = select('Window', [['1m', '1 minute'], ['5m', '5 minutes'], ['1h', '1 hour']], st.window, (v) => { st.window = v; run(); }, { 'data-test': 'guard-window' });
    const range = select('History', RANGE_OPTIONS(['1h', '6h', '24h', '3d', '7d']), st.range, (v) => { st.range = v; run(); }, { 'data-test': 'guard-range' });
    const service = select('Service', [['', 'All services']], st.service, (v) => { st.service = v; run(); }, { 'data-test': 'guard-service' });
    sql(`SELECT DISTINCT service FROM platform.platform_event_logs WHERE occurred_at >= now() - INTERVAL '7 days' ORDER BY service LIMIT 500`)
      .then((out) => fillSelect(service.input, [['', 'All services'], ...out.rows.map((r) => [r.service, r.service])], st.service))
      .catch(() => { /* the peaks call shows the error */ });

    const peaksBody = h('div', { class: 'card-body flush' });
    const peaksCard = card('Peaks', '', peaksBody);
    const chartEl = h('div', { class: 'chart', 'data-test': 'guard-chart' });
    const chartNote = h('div', { class: 'chart-caption' });
    const chartError = h('div');
    const chartCard = card('Load', '', h('div', { class: 'card-body' }, chartEl, chartNote), chartError);

    const capInput = h('input', { type: 'number', min: '0', step: '1', placeholder: 'requests', 'data-test': 'cap-input', style: 'width:130px' });
    const scope = h('select', { 'data-test': 'cap-scope' });
    const simButton = h('button', { class: 'button primary', type: 'submit', 'data-test': 'simulate' }, 'Simulate (monitor mode)');
    const simResult = h('div', { 'data-test': 'sim-result' });
    const simCard = card('Candidate cap', 'what it would have limited — nothing is enforced',
      h('div', { class: 'card-body' },
        h('form', { class: 'inline-form', onsubmit: (e) => { e.preventDefault(); simulate(); } },
          h('label', { class: 'field' }, 'Cap (requests per window)', capInput),
          h('label', { class: 'field grow' }, 'Applies to', scope),
          simButton),
        h('div', { style: 'margin-top:14px' }, simResult)));

    const domain = h('input', { value: 'sluice', 'data-test': 'envoy-domain', style: 'width:180px' });
    const exportButton = h('button', { class: 'button', type: 'submit', 'data-test': 'export-envoy' }, '⤓ Export for Envoy');
    const exportError = h('div', { 'data-test': 'export-error' });
    const exportCard = card('Enforce', 'the recommended caps as an Envoy rate-limit service configuration',
      h('div', { class: 'card-body' },
        h('form', { class: 'inline-form', onsubmit: (e) => { e.preventDefault(); exportEnvoy(); } },
          h('label', { class: 'field' }, 'Rate-limit domain', domain), exportButton,
          h('span', { class: 'muted small', text: 'Every principal’s recommended cap = max(⌈peak × headroom⌉, floor), keyed by the dimension above.' }))),
      exportError);

    clear(root,
      pageHead('Guardrails', 'Caps per user, team, domain or endpoint — a ceiling so one principal cannot degrade the platform, tuned from historical peaks. Watch would-be breaches in monitor mode before enforcing at the gateway.'),
      h('section', { class: 'card' }, h('div', { class: 'filters' }, by.field, win.field, range.field, service.field)),
      h('div', { class: 'grid-2-1' }, peaksCard.el, h('div', { style: 'display:flex;flex-direction:column;gap:16px;min-width:0' }, chartCard.el, simCard.el)),
      exportCard.el);

    // Series by request, for redrawing the cap lines without asking again
    // (cleared with each new peaks answer: "since" moves with the clock).
    const seriesCache = new Map();
    const runPeaks = latest();
    const runChart = latest();
    let chartHandle = null;
    onDispose(() => chartHandle && chartHandle.dispose());

    async function run() {
      setParams('guardrails', st);
      simulation = null;
      clear(simResult);
      peaksCard.el.classList.add('loading');
      const r = await runPeaks((signal) => api(`/v1/guardrails/peaks?${qs({ by: st.by, window: st.window, since: st.range, service: st.service, limit: 50 })}`, { signal }));
      if (r.stale) return;
      peaksCard.el.classList.remove('loading');
      if (!r.ok) {
        report = null;
        clear(peaksBody, errorBox(r.error));
        clear(chartEl);
        return;
      }
      report = r.value;
      seriesCache.clear();
      peaksCard.head.querySelector('.sub').textContent = `per ${report.window} window · headroom ×${report.headroom}, floor ${fmtInt(report.floor)}`;
      const keep = selected;
      selected = (keep && report.rows.find((x) => x.principal === keep.principal)) || report.rows[0] || null;
      renderPeaks();
      fillScope();
      if (selected) {
        capInput.value = String(Math.max(1, Math.round(selected.recommended_cap * 0.5)));
      }
      drawChart();
    }

    function renderPeaks() {
      if (!report.rows.length) {
        clear(peaksBody, h('div', { class: 'empty', text: 'No requests in this range.' }));
        return;
      }
      const rows = report.rows.map((r) => {
        const tr = h('tr', {
          class: `selectable${r === selected ? ' selected' : ''}`,
          'data-test': 'peak-row',
          onclick: () => {
            selected = r;
            capInput.value = String(Math.max(1, Math.round(r.recommended_cap * 0.5)));
            renderPeaks();
            fillScope();
            drawChart();
          },
        },
          h('td', {}, principalCell(r.principal)),
          h('td', { class: 'num' }, fmtInt(r.peak)),
          h('td', { class: 'nowrap muted', title: `${fmtTime(r.peak_at)} UTC` }, fmtShort(r.peak_at).slice(0, -3)),
          h('td', { class: 'num', title: `p95 ${fmtInt(r.p95)} · mean ${r.mean.toFixed(1)} over ${fmtInt(r.windows)} busy windows` }, fmtInt(r.p99)),
          h('td', { class: 'num' }, h('b', { text: fmtInt(r.recommended_cap) })));
        return tr;
      });
      clear(peaksBody, h('div', { class: 'scroll-y' }, h('table', { class: 'data', 'data-test': 'peaks-table' },
        h('thead', {}, h('tr', {}, h('th', { text: 'Principal' }), h('th', { class: 'num', text: 'Peak' }), h('th', { text: 'Peak at' }),
          h('th', { class: 'num', text: 'P99' }), h('th', { class: 'num', text: 'Rec. cap' }))),
        h('tbody', {}, rows))));
    }

    function fillScope() {
      const opts = [];
      if (selected && selected.principal != null) opts.push(['principal', `Only ${selected.principal} (its own cap)`]);
      opts.push(['default', `Every ${st.by} (a default cap)`]);
      fillSelect(scope, opts, scope.value || opts[0][0]);
    }

    async function drawChart() {
      clear(chartError);
      if (chartHandle) { chartHandle.dispose(); chartHandle = null; }
      if (!selected) { clear(chartEl); return; }
      const who = principalText(selected.principal);
      chartCard.head.replaceChildren(h('h2', {}, `Requests per ${report.window} window`, h('span', { class: 'sub', text: `${who} · peak ${fmtInt(selected.peak)} at ${fmtShort(selected.peak_at)}` })));
      if (selected.principal == null) {
        clear(chartEl, h('div', { class: 'empty', text: 'Requests without a principal cannot be charted by principal.' }));
        return;
      }
      const key = qs({ by: st.by, since: st.range, service: st.service, principal: selected.principal, step: report.window });
      let s = seriesCache.get(key);
      if (!s) {
        chartCard.el.classList.add('loading');
        const r = await runChart((signal) => api(`/v1/attribution/series?${key}`, { signal }));
        if (r.stale) return;
        chartCard.el.classList.remove('loading');
        if (!r.ok) { clear(chartEl); chartError.append(errorBox(r.error)); return; }
        s = r.value;
        seriesCache.set(key, s);
      }
      if (chartHandle) { chartHandle.dispose(); chartHandle = null; }
      const from = Date.parse(s.from) / 1000;
      const to = Date.parse(s.to) / 1000;
      const d = densify(from, to, s.step_seconds, [s.series[0] ? s.series[0].points : []]);
      const lines = [
        { label: `${who} · requests`, values: d.values[0], color: '#4f8cff', fill: 'rgba(79,140,255,0.12)', width: 1.2 },
        { label: 'recommended cap', values: d.x.map(() => selected.recommended_cap), color: '#f85149', dash: [6, 4], width: 1.5 },
      ];
      const cap = candidateCap();
      if (cap != null) lines.push({ label: 'candidate cap', values: d.x.map(() => cap), color: '#d29922', dash: [2, 3], width: 1.5 });
      chartHandle = chart(chartEl, { x: d.x, series: lines, height: 250 });
      chartNote.textContent = `${fmtInt(d.x.length)} windows of ${s.step} · ${fmtInt(s.series[0] ? s.series[0].requests : 0)} requests · from /v1/attribution/series (by=${st.by}, step=${s.step})`;
    }

    function candidateCap() {
      const v = Number(capInput.value);
      return capInput.value !== '' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : null;
    }

    async function simulate() {
      const cap = candidateCap();
      if (cap == null) { toast('Enter a cap: a whole number of requests per window', true); return; }
      const caps = scope.value === 'principal' && selected && selected.principal != null
        ? [{ principal: selected.principal, limit: cap }]
        : [{ limit: cap }];
      simButton.disabled = true;
      clear(simResult, h('div', { class: 'muted' }, h('span', { class: 'spinner' }), ' Replaying the history against the cap…'));
      try {
        simulation = await api('/v1/guardrails/simulate', { method: 'POST', body: { by: st.by, window: st.window, since: st.range, service: st.service || undefined, caps } });
        renderSimulation();
        drawChart();
      } catch (e) {
        clear(simResult, errorBox(e));
      } finally {
        simButton.disabled = false;
      }
    }

    function renderSimulation() {
      const o = simulation.caps[0];
      const hit = o.breach_windows > 0;
      const who = o.cap.principal != null ? o.cap.principal : `every ${simulation.by} without a cap of its own`;
      clear(simResult,
        h('div', { class: 'sim-summary' },
          h('div', {}, h('div', { class: `big ${hit ? 'bad' : 'good'}`, 'data-test': 'sim-breaches', text: fmtInt(o.breach_windows) }), h('div', { class: 'muted small', text: `breaching ${simulation.window} windows` })),
          h('div', {}, h('div', { class: `big ${hit ? 'bad' : 'good'}`, 'data-test': 'sim-limited', text: fmtInt(o.limited_requests) }), h('div', { class: 'muted small', text: 'requests would have been limited' })),
          h('div', {}, h('div', { class: 'big', text: fmtInt(o.principals.length) }), h('div', { class: 'muted small', text: `${simulation.by}s affected` })),
          h('div', { class: 'muted small' },
            `cap ${fmtInt(o.cap.limit)} per ${simulation.window} for ${who}`, h('br'),
            hit ? `first breach ${fmtShort(o.first_breach)} · last ${fmtShort(o.last_breach)} UTC` : 'no window over the cap in this history')),
        o.principals.length ? h('div', { class: 'scroll-y', style: 'max-height:220px' }, h('table', { class: 'data', 'data-test': 'sim-table' },
          h('thead', {}, h('tr', {}, h('th', { text: 'Would have been limited' }), h('th', { class: 'num', text: 'Windows' }), h('th', { class: 'num', text: 'Requests over' }), h('th', { text: 'First' }), h('th', { text: 'Last' }))),
          h('tbody', {}, o.principals.slice(0, 100).map((b) => h('tr', {},
            h('td', {}, principalCell(b.principal)), h('td', { class: 'num', text: fmtInt(b.breach_windows) }), h('td', { class: 'num', text: fmtInt(b.limited_requests) }),
            h('td', { class: 'nowrap muted', text: fmtShort(b.first_breach) }), h('td', { class: 'nowrap muted', text: fmtShort(b.last_breach) })))))) : null);
    }

    async function exportEnvoy() {
      clear(exportError);
      exportButton.disabled = true;
      const path = `/v1/guardrails/export?${qs({ format: 'envoy', domain: domain.value.trim(), by: st.by, window: st.window, since: st.range, service: st.service })}`;
      try {
        const yaml = await api(path, { accept: 'application/yaml' });
        const pre = h('pre', { class: 'sql', 'data-test': 'envoy-yaml', text: yaml });
        const copy = h('button', { class: 'button small', type: 'button', onclick: () => copyText(yaml, copy) }, 'Copy');
        openModal('Envoy rate-limit configuration',
          h('div', { class: 'toolbar' },
            h('span', { class: 'muted small', text: `domain ${domain.value.trim()} · caps per ${st.by} per ${st.window === '1m' ? 'minute' : 'hour'} · from ${st.range} of history` }),
            h('span', { style: 'flex:1' }), copy,
            h('button', { class: 'button small', type: 'button', onclick: () => download('ratelimit.yaml', yaml, 'application/yaml') }, '⤓ ratelimit.yaml')),
          pre);
      } catch (e) {
        exportError.append(errorBox(e));
      } finally {
        exportButton.disabled = false;
      }
    }

    capInput.addEventListener('input', () => drawChart());
    run();
  }

  // ============================================================ Service health

  const TERMINATIONS = ['OOMKilled', 'Error', 'Completed', 'ContainerCannotRun'];
  const REASON_COLORS = { OOMKilled: '#f85149', Error: '#f0883e', Completed: '#3fb950', ContainerCannotRun: '#a371f7' };

  /** The workload a pod belongs to, by the names Kubernetes gives pods (as the health endpoint matches them). */
  function serviceOf(pod) {
    let m = /^(.+)-[a-z0-9]{5,10}-[a-z0-9]{5}$/.exec(pod);
    if (m) return m[1];
    m = /^(.+)-[0-9]+$/.exec(pod);
    if (m) return m[1];
    m = /^(.+)-[a-z0-9]{5}(-driver)?$/.exec(pod);
    if (m) return m[1];
    return pod;
  }

  function eventTag(e) {
    if (TERMINATIONS.includes(e.reason) || e.reason === 'BackOff') return ['RESTART', 'red'];
    if (/Scal|Replicas/.test(e.reason)) return ['SCALE', 'blue'];
    if (/Resources|Updated|Config/.test(e.reason)) return ['CHANGE', 'purple'];
    if (e.event_type === 'Warning') return ['WARNING', 'amber'];
    return ['EVENT', ''];
  }

  function healthPage(root) {
    const p = params();
    const st = { namespace: p.get('namespace') || '', service: p.get('service') || '', range: p.get('range') || '24h' };

    const fleetEl = h('div', { class: 'fleet', 'data-test': 'fleet' }, h('span', { class: 'muted' }, h('span', { class: 'spinner' }), ' Loading services…'));
    const fleetError = h('div');
    const range = select('Window', RANGE_OPTIONS(['1h', '24h', '7d']), st.range, (v) => { st.range = v; show(); }, { 'data-test': 'health-range' });
    const picker = card('Services', 'restarts in the last 24 hours, from platform_events', h('div', { class: 'card-body' }, fleetEl), fleetError);
    picker.head.append(range.field);
    range.field.classList.add('nowrap');
    const body = h('div', { style: 'display:flex;flex-direction:column;gap:16px' });

    clear(root,
      pageHead('Service health', 'Restarts, how containers ended and recent lifecycle events — from the Kubernetes events in platform_events.'),
      picker.el, body);

    let services = [];
    const fleetSql = `SELECT namespace, name, kind,
       count(*) FILTER (WHERE reason IN (${TERMINATIONS.map((r) => `'${r}'`).join(', ')})
                        AND occurred_at >= now() - INTERVAL '24 hours') AS restarts_24h,
       count(*) AS events,
       max(occurred_at) AS last_event
FROM platform.platform_events
WHERE occurred_at >= now() - INTERVAL '7 days'
GROUP BY namespace, name, kind
ORDER BY namespace, name
LIMIT 5000`;
    sql(fleetSql).then((out) => {
      const byService = new Map();
      for (const r of out.rows) {
        const name = r.kind === 'Pod' ? serviceOf(r.name) : r.name;
        const key = `${r.namespace}/${name}`;
        const s = byService.get(key) || { namespace: r.namespace, name, restarts: 0, events: 0 };
        s.restarts += Number(r.restarts_24h) || 0;
        s.events += Number(r.events) || 0;
        byService.set(key, s);
      }
      services = [...byService.values()].sort((a, b) => b.restarts - a.restarts || a.name.localeCompare(b.name));
      if (!st.service && services.length) {
        st.namespace = services[0].namespace;
        st.service = services[0].name;
      }
      renderFleet();
      show();
    }).catch((e) => {
      clear(fleetEl);
      fleetError.append(errorBox(e));
      if (st.service) show();
    });

    function renderFleet() {
      if (!services.length) {
        clear(fleetEl, h('span', { class: 'muted', text: 'No lifecycle events in the last 7 days.' }));
        return;
      }
      clear(fleetEl, services.map((s) => h('button', {
        type: 'button',
        class: s.namespace === st.namespace && s.name === st.service ? 'on' : '',
        'data-test': 'fleet-service', 'data-service': s.name,
        title: `${s.namespace}/${s.name}: ${s.restarts} restart(s) in 24 h, ${s.events} event(s) in 7 days`,
        onclick: () => { st.namespace = s.namespace; st.service = s.name; renderFleet(); show(); },
      }, h('span', { class: `dot ${s.restarts >= 3 ? 'bad' : s.restarts ? 'warn' : ''}` }), s.name,
      s.restarts ? h('span', { class: `chip ${s.restarts >= 3 ? 'red' : 'amber'}`, text: String(s.restarts) }) : null)));
    }

    const runHealth = latest();
    async function show() {
      setParams('health', st);
      if (!st.service) return;
      body.classList.add('loading');
      const r = await runHealth((signal) => api(`/v1/services/${encodeURIComponent(st.namespace)}/${encodeURIComponent(st.service)}/health?${qs({ since: st.range })}`, { signal }));
      if (r.stale) return;
      body.classList.remove('loading');
      if (!r.ok) { clear(body, h('section', { class: 'card' }, errorBox(r.error))); return; }
      render(r.value);
    }

    function render(hl) {
      const last = hl.last_terminations[0];
      const recent = last && Date.now() - Date.parse(last.occurred_at) < 3600e3;
      const status = hl.restarts === 0
        ? ['Healthy', 'green']
        : recent ? ['Outage — restarting', 'red'] : hl.restarts >= 3 ? ['Degraded — restarting', 'red'] : ['Restarted', 'amber'];
      const oom = hl.termination_reasons.OOMKilled || 0;
      const title = h('div', { class: 'service-title' },
        h('h1', { text: hl.service }),
        h('span', { class: `chip status-badge ${status[1]}`, 'data-test': 'health-status', text: status[1] === 'green' ? `✓ ${status[0]}` : `⚠ ${status[0]}` }),
        h('span', { class: 'ns', text: `namespace ${hl.namespace} · ${fmtShort(hl.from)} → ${fmtShort(hl.to)} UTC` }));

      const kpis = h('div', { class: 'kpis' },
        kpi(`Restarts (${st.range})`, fmtInt(hl.restarts), `${Object.keys(hl.termination_reasons).length} termination reason(s)`, hl.restarts >= 3 ? 'bad' : hl.restarts ? 'warn' : 'good', 'health-restarts'),
        kpi('OOMKilled', fmtInt(oom), oom ? 'containers ran out of memory' : 'no out-of-memory kills', oom ? 'bad' : 'good'),
        kpi('Last termination', last ? `${last.reason}` : '—', last ? `${fmtAgo(last.occurred_at)} · ${last.name}${last.exit_code != null ? ` · exit ${last.exit_code}` : ''}` : 'none in this window', last ? 'warn' : ''),
        kpi('Lifecycle events', fmtInt(hl.recent_events.length), hl.recent_events.length >= 50 ? 'the latest 50 shown' : 'in this window'));

      const maxReason = Math.max(1, ...Object.values(hl.termination_reasons));
      const reasons = card('Termination reasons', `how containers ended · ${st.range}`,
        h('div', { class: 'card-body' }, Object.keys(hl.termination_reasons).length
          ? h('div', { class: 'reason-bars', 'data-test': 'health-reasons' }, Object.entries(hl.termination_reasons).sort((a, b) => b[1] - a[1]).map(([reason, n]) =>
            h('div', { class: 'reason-bar', 'data-reason': reason },
              h('span', {}, h('span', { class: 'chip', style: `color:${REASON_COLORS[reason] || '#8b97a6'}`, text: reason })),
              h('span', { class: 'track' }, h('span', { style: `width:${(100 * n) / maxReason}%;background:${REASON_COLORS[reason] || '#8b97a6'}` })),
              h('span', { class: 'num', text: fmtInt(n) }))))
          : h('div', { class: 'empty', 'data-test': 'health-reasons', text: 'No container terminated in this window.' })));

      const timelineCard = card('Restart timeline', 'each mark is a container termination', timeline(hl));

      const terms = card('Latest terminations', 'open the instance that ended, with its last lines',
        h('div', { class: 'card-body flush' }, hl.last_terminations.length ? h('table', { class: 'data' },
          h('thead', {}, h('tr', {}, h('th', { text: 'Time (UTC)' }), h('th', { text: 'Pod' }), h('th', { text: 'Container' }), h('th', { text: 'Reason' }), h('th', { class: 'num', text: 'Exit' }), h('th', { text: '' }))),
          h('tbody', {}, hl.last_terminations.slice(0, 10).map((e) => {
            const inst = e.restart_count != null ? e.restart_count - 1 : null;
            return h('tr', {},
              h('td', { class: 'nowrap', text: fmtTime(e.occurred_at) }),
              h('td', { class: 'principal', text: e.name }),
              h('td', { class: 'muted', text: e.container || '—' }),
              h('td', {}, h('span', { class: `chip ${e.reason === 'OOMKilled' ? 'red' : e.reason === 'Completed' ? 'green' : 'amber'}`, text: e.reason })),
              h('td', { class: 'num', text: e.exit_code ?? '—' }),
              h('td', {}, inst != null && inst >= 0 && e.kind === 'Pod'
                ? h('a', { href: `#/logs?${qs({ namespace: hl.namespace, pod: e.name, range: '7d', instance: inst })}`, 'data-test': 'open-instance-logs' }, `instance #${inst} logs →`)
                : null));
          }))) : h('div', { class: 'empty', text: 'No terminations in this window.' })));

      const events = card('Recent lifecycle events', `${fmtInt(hl.recent_events.length)} newest first`,
        h('div', { class: 'card-body flush' }, hl.recent_events.length ? h('div', { class: 'scroll-y' }, h('table', { class: 'data', 'data-test': 'health-events' },
          h('thead', {}, h('tr', {}, h('th', { text: 'Time (UTC)' }), h('th', { text: '' }), h('th', { text: 'Reason' }), h('th', { text: 'Object' }), h('th', { text: 'Message' }))),
          h('tbody', {}, hl.recent_events.map((e) => {
            const [tag, tone] = eventTag(e);
            return h('tr', {},
              h('td', { class: 'nowrap', text: fmtTime(e.occurred_at) }),
              h('td', {}, h('span', { class: `chip event-tag ${tone}`, text: tag })),
              h('td', { class: 'nowrap' }, e.reason, e.exit_code != null ? h('span', { class: 'muted', text: ` · exit ${e.exit_code}` }) : null),
              h('td', { class: 'muted nowrap' }, `${e.kind}/${e.name}`, e.container ? ` · ${e.container}` : ''),
              h('td', { style: 'word-break:break-word', text: e.message || '' }));
          })))) : h('div', { class: 'empty', text: 'No lifecycle events in this window.' })));

      const alertsBody = h('div', { class: 'card-body flush' }, h('div', { class: 'empty', text: 'Loading alerts…' }));
      const alertsCard = card('Alerts', 'pending and firing alerts of this service\'s rules', alertsBody);
      alertsCard.el.dataset.test = 'health-alerts';
      serviceAlerts(hl.namespace, hl.service).then((list) => {
        clear(alertsBody, list.length ? h('table', { class: 'data' },
          h('thead', {}, h('tr', {}, ['Rule', 'State', 'Labels', 'Since'].map((t) => h('th', { text: t })))),
          h('tbody', {}, list.map((a) => h('tr', { 'data-test': 'health-alert', 'data-rule': a.rule },
            h('td', {}, h('a', { href: '#/alerts', text: a.rule })),
            h('td', {}, h('span', { class: `chip ${STATE_CHIP[a.state] || 'green'}`, text: a.state })),
            h('td', { class: 'mono small', text: Object.entries(a.labels).filter(([k]) => k !== 'alertname').map(([k, x]) => `${k}=${x}`).join(' ') }),
            h('td', { text: fmtAgo(a.fired_at || a.active_at) })))))
          : h('div', { class: 'empty', text: 'No alert of any rule for this service.' }));
      }).catch((e) => clear(alertsBody, errorBox(e)));

      clear(body, title, kpis, alertsCard.el, h('div', { class: 'grid-2' }, reasons.el, timelineCard.el), terms.el, events.el);
    }

    function timelineSvg(hl, W) {
      const H = 90;
      const from = Date.parse(hl.from);
      const to = Date.parse(hl.to);
      const x = (t) => 16 + ((t - from) / Math.max(1, to - from)) * (W - 32);
      const g = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Terminations over the window', 'data-test': 'health-timeline' });
      g.append(svg('line', { x1: 16, x2: W - 16, y1: 40, y2: 40, stroke: '#2a323d', 'stroke-width': 2 }));
      const ticks = Math.max(2, Math.min(6, Math.floor(W / 110)));
      for (let i = 0; i <= ticks; i++) {
        const t = from + ((to - from) * i) / ticks;
        g.append(svg('line', { x1: x(t), x2: x(t), y1: 34, y2: 46, stroke: '#3a4452' }));
        g.append(svg('text', { x: x(t), y: 70, fill: '#8b97a6', 'font-size': 11, 'text-anchor': i === 0 ? 'start' : i === ticks ? 'end' : 'middle' }, fmtShort(t).slice(0, -3)));
      }
      for (const e of hl.last_terminations) {
        const t = Date.parse(e.occurred_at);
        const c = svg('circle', { cx: x(t), cy: 40, r: 6, fill: REASON_COLORS[e.reason] || '#8b97a6', stroke: '#151b23', 'stroke-width': 2 });
        c.append(svg('title', {}, `${fmtTime(t)} UTC · ${e.reason} · ${e.name}${e.container ? `/${e.container}` : ''}`));
        g.append(c);
      }
      if (!hl.last_terminations.length) {
        g.append(svg('text', { x: W / 2, y: 24, fill: '#3fb950', 'font-size': 12, 'text-anchor': 'middle' }, 'no terminations'));
      }
      return g;
    }

    /** The timeline at its container's width, redrawn when that changes. */
    function timeline(hl) {
      const el = h('div', { class: 'card-body timeline' });
      let width = 0;
      const draw = () => {
        const w = Math.floor(el.clientWidth - 32);
        if (w > 100 && w !== width) {
          width = w;
          clear(el, timelineSvg(hl, w));
        }
      };
      const ro = new ResizeObserver(draw);
      ro.observe(el);
      onDispose(() => ro.disconnect());
      return el;
    }
  }

  // ============================================================ Alerts

  const STATE_CHIP = { firing: 'red', pending: 'amber', inactive: 'green' };
  const STATE_LABEL = { firing: 'Firing', pending: 'Pending', inactive: 'OK' };

  function alertsPage(root) {
    const body = h('div', { 'data-test': 'alerts-body' }, h('span', { class: 'muted' }, h('span', { class: 'spinner' }), ' Loading rules…'));
    const table = card('Rules', 'evaluated by sluice over its tables and logs; delivered to Alertmanager', h('div', { class: 'card-body flush' }, body));
    const detail = h('div', { style: 'display:flex;flex-direction:column;gap:16px' });
    clear(root,
      pageHead('Alerts', 'Rules we own and ship — evaluated by the platform service, not customer Grafana.'),
      table.el, detail);
    const run = latest();
    let timer = null;
    onDispose(() => clearTimeout(timer));
    async function load() {
      const r = await run((signal) => api('/v1/alerts', { signal }));
      if (r.stale) return;
      if (!r.ok) { clear(body, errorBox(r.error)); return; }
      render(r.value);
      timer = setTimeout(load, 10000);
    }
    function render(v) {
      if (!v.rules.length) {
        clear(body, h('div', { class: 'card-body muted', text: 'No rules. Add rule files under [alerts] rules, or keep default_rules = true.' }));
        return;
      }
      const rows = v.rules.map((r) => {
        const firing = r.alerts.filter((a) => a.state === 'firing').length;
        return h('tr', { 'data-test': 'alert-rule', 'data-rule': r.name, 'data-state': r.state, style: 'cursor:pointer', onclick: () => showRule(r) },
          h('td', {}, h('strong', { text: r.name }), r.last_error ? h('div', { class: 'small', style: 'color:#ff8b84', 'data-test': 'rule-error', text: r.last_error }) : null),
          h('td', { text: r.signal || r.kind.toUpperCase() }),
          h('td', { text: r.target || '—' }),
          h('td', { class: 'mono', text: [r.threshold, r.for !== '0s' ? `for ${r.for}` : null].filter(Boolean).join(' · ') || 'any row' }),
          h('td', { text: r.channel || '—' }),
          h('td', {}, h('span', { class: `chip ${STATE_CHIP[r.state] || ''}`, 'data-test': 'rule-state', text: STATE_LABEL[r.state] || r.state }),
            firing > 1 ? h('span', { class: 'muted small', text: ` ×${firing}` }) : null),
          h('td', { 'data-test': 'rule-last-fired', text: r.last_fired ? fmtAgo(r.last_fired) : 'never' }));
      });
      clear(body, h('div', { class: 'scroll-y' }, h('table', { class: 'data', 'data-test': 'alerts-table' },
        h('thead', {}, h('tr', {}, ['Rule', 'Signal', 'Target', 'Threshold', 'Channel', 'State', 'Last fired'].map((t) => h('th', { text: t })))),
        h('tbody', {}, rows))),
      v.evaluating_here ? null : h('div', { class: 'card-body muted small', text: 'Another replica evaluates the rules; this view follows its saved state.' }));
    }
    function showRule(r) {
      const alerts = r.alerts.length ? h('table', { class: 'data', 'data-test': 'rule-alerts' },
        h('thead', {}, h('tr', {}, ['State', 'Labels', 'Value', 'Since'].map((t) => h('th', { text: t })))),
        h('tbody', {}, r.alerts.map((a) => h('tr', {},
          h('td', {}, h('span', { class: `chip ${STATE_CHIP[a.state] || 'green'}`, text: a.state })),
          h('td', { class: 'mono small', text: Object.entries(a.labels).filter(([k]) => k !== 'alertname').map(([k, x]) => `${k}=${x}`).join(' ') }),
          h('td', { class: 'num', text: fmtCompact(a.value) }),
          h('td', { text: fmtAgo(a.fired_at || a.active_at) })))))
        : h('p', { class: 'muted', text: 'No alerts.' });
      const history = r.history.length ? h('table', { class: 'data' },
        h('tbody', {}, r.history.slice(0, 20).map((t) => h('tr', {},
          h('td', { text: fmtTime(t.at) }),
          h('td', { text: `${t.from} → ${t.to}` }),
          h('td', { class: 'mono small', text: Object.entries(t.labels).filter(([k]) => k !== 'alertname').map(([k, x]) => `${k}=${x}`).join(' ') })))))
        : h('p', { class: 'muted', text: 'No transitions yet.' });
      openModal(r.name,
        h('p', { class: 'muted', text: `${r.group} · every ${r.interval} · ${r.kind}` }),
        h('pre', { class: 'sql', 'data-test': 'rule-query', text: r.query }),
        h('h3', { text: 'Alerts' }), alerts,
        h('h3', { text: 'Recent transitions' }), history);
    }
    load();
  }

  /** The alerts of one service, for its health page. */
  async function serviceAlerts(namespace, service) {
    const r = await api('/v1/alerts');
    const out = [];
    for (const rule of r.rules) {
      for (const a of rule.alerts.filter((x) => x.state !== 'resolved')) {
        const l = a.labels;
        const pod = l.pod || l.name || '';
        if ((l.namespace === namespace && (pod === service || serviceOf(pod) === service)) || l.service === service) {
          out.push({ rule: rule.name, ...a });
        }
      }
    }
    return out;
  }

  // ------------------------------------------------------------------ shell

  function openModal(title, ...content) {
    const dialog = document.getElementById('modal');
    document.getElementById('modal-title').textContent = title;
    clear(document.getElementById('modal-content'), content);
    if (!dialog.open) dialog.showModal();
  }

  const PAGES = { attribution: attributionPage, logs: logsPage, guardrails: guardrailsPage, health: healthPage, alerts: alertsPage };
  const TITLES = { attribution: 'Attribution', logs: 'Logs', guardrails: 'Guardrails', health: 'Service health', alerts: 'Alerts' };

  function route() {
    const name = (location.hash.replace(/^#\/?/, '').split('?')[0]) || 'attribution';
    const page = PAGES[name] ? name : 'attribution';
    while (disposers.length) {
      try { disposers.pop()(); } catch (_) { /* a chart already gone */ }
    }
    for (const a of document.querySelectorAll('.nav-link')) a.classList.toggle('active', a.dataset.page === page);
    document.title = `${TITLES[page]} · sluice`;
    const root = document.getElementById('page');
    root.dataset.page = page;
    PAGES[page](root);
  }

  function settings() {
    const dialog = document.getElementById('settings');
    const input = document.getElementById('token-input');
    document.getElementById('open-settings').addEventListener('click', () => {
      input.value = localStorage.getItem(TOKEN_KEY) || '';
      dialog.showModal();
    });
    dialog.addEventListener('close', () => {
      if (dialog.returnValue === 'save') {
        if (input.value.trim()) localStorage.setItem(TOKEN_KEY, input.value.trim());
        else localStorage.removeItem(TOKEN_KEY);
      } else if (dialog.returnValue === 'clear') {
        localStorage.removeItem(TOKEN_KEY);
      } else {
        return;
      }
      toast('Access token saved for this browser');
      route();
    });
    document.getElementById('modal-close').addEventListener('click', () => document.getElementById('modal').close());
  }

  window.addEventListener('hashchange', route);
  settings();
  route();
})();
