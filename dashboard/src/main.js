// The wall: open alerts live from the daemon's WebSocket, newest and most severe first; a
// new CRITICAL or MAJOR alert pops up with its picture and evidence and stays until someone
// acknowledges it (here or anywhere: every client sees the change); the figures of the day
// (read again every minute); the grid map, where a click on a grid filters the feed and charts to it
// and beneath (pop-ups still come from everywhere); the camera mosaic. The token comes from
// the address (?token=...): a wrong one shows a login error, a viewer's shows no actions.
// An operator acknowledges, adds notes, resolves, and dispatches an alert's work to a
// department with a deadline; where that work stands (dispatched, in progress, overdue)
// comes back on the alert itself (`incidents`), in its panel and as a badge in the feed.
import { AlertStream } from './stream.js';
import * as i18n from './i18n.js';
import { DayCharts, SEVERITIES } from './charts.js';
import { GridMap } from './map.js';
import { Mosaic } from './mosaic.js';

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get('token') ?? '';
/** Alerts not resolved, by id. */
const alerts = new Map();
/** Pop-ups on screen, by alert id. */
const popups = new Map();
/**
 * What the operator is filling in on each alert's panel — `{ note, dept, within }` — kept
 * apart from the panel, which is drawn again on every change of its alert.
 */
const drafts = new Map();

function draft(id) {
  if (!drafts.has(id)) drafts.set(id, { note: '', dept: null, within: '120' });
  return drafts.get(id);
}
let who = null;
let charts = null;
/** How often the figures of the day are read again (they are sums, not the live state). */
const FIGURES_MS = 60000;
let map = null;
let mosaic = null;
/** The grid selected on the map: the page shows it and what is beneath it. */
let filter = null;
let loginError = null;
let drawQueued = false;
/** Departments work can be dispatched to (id → name); empty when any id is taken. */
let departments = new Map();
/** Deadlines offered when dispatching, in minutes. */
const WITHIN_MIN = [30, 60, 120, 240, 1440];

function withToken(path) {
  return `${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

function time(ms) {
  return ms ? new Date(ms).toLocaleTimeString(i18n.current() === 'zh' ? 'zh-CN' : 'en-GB') : '';
}

function rank(a) {
  const i = SEVERITIES.indexOf(a.severity);
  return i < 0 ? SEVERITIES.length : i;
}

function muted(a) {
  return Boolean(a.silenced_by || a.inhibited_by);
}

function showLoginError(key, status) {
  loginError = { key, status };
  $('login').hidden = false;
  $('wall').hidden = true;
  $('conn').hidden = true;
  $('login-why').textContent = i18n.t(key) + (status ? ` (HTTP ${status})` : '');
}

function setState(state) {
  const conn = $('conn');
  conn.dataset.state = state;
  conn.textContent = i18n.t(state === 'live' ? 'live' : state === 'lost' ? 'lost' : 'connecting');
  const lost = $('lost');
  lost.hidden = state !== 'lost';
  lost.textContent = i18n.t('lost');
  document.body.classList.toggle('is-lost', state === 'lost');
}

function evidenceLine(e) {
  const what = {
    sensor: () => `${e.sensor_id} ${e.kind} ${e.state} ${e.reading}`,
    camera: () => `${e.camera_id} ${e.kind}${e.detail ? ` — ${e.detail}` : ''}`,
    incident: () => `${e.incident_id} ${e.category} ${e.description}`,
  }[e.source];
  return el(
    'li',
    { class: `ev ev-${e.source}` },
    el('time', { text: time(e.time_ms) }),
    el('span', { class: 'ev-source', text: i18n.t(e.source) }),
    el('span', { class: 'ev-what', text: what ? what() : '' }),
  );
}

/**
 * The alert's picture: the one taken when it opened, else its first camera's live
 * snapshot. The daemon answers 503 while a camera has no keyframe yet or its snapshot pool
 * is busy, so a failed load is tried again (live) a few times before "no picture".
 */
function picture(a) {
  const live = a.camera_ids?.[0] ? `/snapshot/${a.camera_ids[0]}.jpg` : null;
  const urls = [a.snapshots?.[0]?.url, live, live, live, live, live].filter(Boolean);
  const none = () => el('div', { class: 'no-picture', text: i18n.t('no_picture') });
  if (urls.length === 0) return none();
  const img = el('img', { class: 'snapshot', alt: a.camera_ids?.[0] ?? '' });
  let tries = 0;
  img.onerror = () => {
    tries += 1;
    if (tries >= urls.length) img.replaceWith(none());
    else setTimeout(() => { img.src = withToken(urls[tries]); }, 1000);
  };
  img.src = withToken(urls[0]);
  return img;
}

/**
 * An operator's action on alert `id` (`acknowledge`, `resolve`, `note`, `dispatch`). On success the
 * change comes back on the stream, as to every other client; a refusal is shown.
 */
async function act(id, action, body, button, errorEl) {
  button.disabled = true;
  errorEl.textContent = '';
  const r = await fetch(`/api/alerts/${encodeURIComponent(id)}/${action}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  }).catch((e) => ({ ok: false, status: 0, text: async () => String(e) }));
  if (!r.ok) errorEl.textContent = `${r.status}: ${await r.text()}`;
  button.disabled = false;
  return r.ok;
}

/** Where `a` is (shown by a ring on the map while its panel is open), as a line. */
function position(a) {
  const at = map?.place(a);
  if (!at) return '';
  const [lon, lat] = at;
  const text = `${i18n.t('position')} ${Math.abs(lat).toFixed(5)}° ${lat >= 0 ? 'N' : 'S'}, ${Math.abs(lon).toFixed(5)}° ${lon >= 0 ? 'E' : 'W'}`;
  return el('p', { class: 'position', text });
}

/** Forgets the note typed for alert `id` once it was sent (its panel may be a new one by now). */
function clearDraft(id) {
  draft(id).note = '';
  const input = popups.get(id)?.box.querySelector('.note-text');
  if (input) input.value = '';
}

/** A department's name (its id when it has none). */
function deptName(id) {
  return departments.get(id) ?? id;
}

/** The incidents linked to `a`, each as it stands now. */
function work(a) {
  return a.incidents ?? [];
}

/** One line of an alert's work: id, status, department, deadline, overdue. */
function workLine(l) {
  const parts = [l.id, i18n.t(`inc_${l.status}`)];
  if (l.department) parts.push(`→ ${deptName(l.department)}`);
  if (l.deadline_ms) parts.push(`${i18n.t('due')} ${time(l.deadline_ms)}`);
  return el('li', { class: `work-item inc-${l.status}${l.overdue ? ' overdue' : ''}`, 'data-incident': l.id },
    el('span', { class: 'work-what', text: parts.join(' · ') }),
    l.overdue ? el('span', { class: 'overdue-flag', text: i18n.t('overdue_flag') }) : '',
    el('span', { class: 'note-by', text: l.updated_by }));
}

/** The feed's badge of an alert whose work went out: the newest dispatched department. */
function workBadge(a) {
  const out = work(a).filter((l) => l.department).at(-1);
  if (!out) return '';
  const text = `→ ${deptName(out.department)}${out.overdue ? ` · ${i18n.t('overdue_flag')}` : ''}`;
  return el('span', { class: `work-badge${out.overdue ? ' overdue' : ''}`, text });
}

/** The dispatch row: department, deadline, and the button (the note field's text goes with it). */
function dispatchRow(a, errorEl, noteInput, current) {
  const dept = departments.size
    ? el('select', { class: 'dispatch-dept', 'aria-label': i18n.t('department') },
      ...[...departments].map(([id, name]) => el('option', { value: id, text: name })))
    : el('input', { type: 'text', class: 'dispatch-dept', placeholder: i18n.t('department') });
  const within = el('select', { class: 'dispatch-within', 'aria-label': i18n.t('due') },
    ...WITHIN_MIN.map((m) => el('option', { value: String(m), text: i18n.t(`within_${m}`) })));
  const d = draft(a.id);
  if (d.dept !== null) dept.value = d.dept;
  within.value = d.within;
  dept.onchange = () => { d.dept = dept.value; };
  dept.oninput = dept.onchange;
  within.onchange = () => { d.within = within.value; };
  const go = button('dispatch', 'dispatch', async (b) => {
    const body = {
      expected_version: current().version,
      department: dept.value,
      deadline_ms: Date.now() + Number(within.value) * 60000,
      note: noteInput.value,
    };
    if (await act(a.id, 'dispatch', body, b, errorEl)) clearDraft(a.id);
  });
  return el('div', { class: 'dispatch-row' }, dept, within, go);
}

function button(cls, label, onclick) {
  const b = el('button', { type: 'button', class: cls, text: i18n.t(label) });
  b.onclick = () => onclick(b);
  return b;
}

/** The actions an operator may take on `a` in its panel. */
function actions(a, errorEl) {
  const box = el('div', { class: 'popup-actions' });
  if (!who?.may_operate) return box;
  const current = () => alerts.get(a.id) ?? a;
  if (a.status === 'OPEN') {
    box.append(button('ack', 'acknowledge', (b) => act(a.id, 'acknowledge', { expected_version: current().version }, b, errorEl)));
  }
  box.append(button('resolve', 'resolve_action', (b) => act(a.id, 'resolve', { expected_version: current().version }, b, errorEl)));
  const input = el('input', { type: 'text', class: 'note-text', maxlength: '2000', placeholder: i18n.t('note_placeholder') });
  input.value = draft(a.id).note;
  input.oninput = () => { draft(a.id).note = input.value; };
  const add = button('add-note', 'add_note', async (b) => {
    if (!input.value.trim()) return;
    if (await act(a.id, 'note', { note: input.value }, b, errorEl)) clearDraft(a.id);
  });
  input.onkeydown = (e) => {
    if (e.key === 'Enter') add.click();
  };
  box.append(el('div', { class: 'note-row' }, input, add), dispatchRow(a, errorEl, input, current));
  return box;
}

/**
 * The panel of alert `a`: a pop-up (a new serious alert, which stays until acknowledged)
 * or, with `detail`, the panel an operator opened from the feed (closed by hand, or when
 * the alert is resolved). Drawn again in place on every change of the alert.
 */
function popup(a, detail = false) {
  const old = popups.get(a.id);
  const isDetail = detail || Boolean(old?.detail);
  const errorEl = el('p', { class: 'popup-error' });
  const head = el('header', {},
    el('span', { class: 'sev', text: i18n.t(a.severity) }),
    el('h2', { text: a.title }));
  if (isDetail) head.append(button('close', 'close', () => closePopup(a.id)));
  const status = a.status === 'ACKNOWLEDGED'
    ? `${i18n.t('acknowledged_by')}${a.acknowledged_by}`
    : i18n.t(a.status);
  const box = el(
    'article',
    { class: `popup sev-${a.severity}${isDetail ? ' detail' : ''}`, 'data-alert': a.id },
    head,
    el('p', { class: 'where', text: `${i18n.t('grid')} ${a.grid_id} · ${time(a.first_seen_ms)} · ${status}` }),
    position(a),
    picture(a),
    el('h3', { text: i18n.t('evidence') }),
    el('ol', { class: 'timeline' }, ...(a.evidence ?? []).map(evidenceLine)),
  );
  if (work(a).length) {
    box.append(el('h3', { text: i18n.t('work') }), el('ol', { class: 'work' }, ...work(a).map(workLine)));
  }
  if (a.notes?.length) {
    box.append(
      el('h3', { text: i18n.t('notes') }),
      el('ol', { class: 'notes' }, ...a.notes.map((n) => el('li', {},
        el('time', { text: time(n.at_ms) }),
        el('span', { class: 'note-by', text: n.by }),
        el('span', { class: 'note-text-shown', text: n.text })))),
    );
  }
  box.append(actions(a, errorEl), errorEl);
  if (old) old.box.replaceWith(box);
  else $('popups').prepend(box);
  popups.set(a.id, { box, detail: isDetail });
}

function closePopup(id) {
  popups.get(id)?.box.remove();
  popups.delete(id);
  if (!alerts.has(id)) drafts.delete(id);
  queueDraw();
}

function feedItem(a) {
  const status = a.status === 'ACKNOWLEDGED'
    ? `${i18n.t('acknowledged_by')}${a.acknowledged_by}`
    : i18n.t(a.status);
  const row = el(
    'li',
    { class: `alert sev-${a.severity}${muted(a) ? ' muted' : ''}`, 'data-alert': a.id },
    el('span', { class: 'sev', text: i18n.t(a.severity) }),
    el('span', { class: 'title', text: a.title }),
    el('span', { class: 'meta' },
      el('span', { class: 'grid', text: a.grid_id }),
      el('span', { class: 'n', text: `×${a.count}` }),
      el('time', { text: time(a.last_seen_ms) }),
      workBadge(a)),
    el('span', { class: `status st-${a.status}`, text: status }),
  );
  row.onclick = () => popup(alerts.get(a.id) ?? a, true);
  return row;
}

function draw() {
  drawQueued = false;
  const all = [...alerts.values()];
  const within = filter && map ? map.below.get(filter) : null;
  const list = (within ? all.filter((a) => within.has(a.grid_id)) : all).sort(
    (x, y) => rank(x) - rank(y) || (y.last_seen_ms ?? 0) - (x.last_seen_ms ?? 0),
  );
  $('feed').replaceChildren(...list.map(feedItem));
  $('open-count').textContent = String(list.length);
  map?.draw(all, new Set([...popups.keys()]));
  camerasOnline();
}

function select(id) {
  filter = id;
  mosaic?.setGrids(id && map ? map.below.get(id) : null);
  loadFigures();
  $('filter').hidden = !id;
  $('filter-name').textContent = id ? `${id}` : '';
  queueDraw();
}

function get(path) {
  return fetch(path, { headers: { authorization: `Bearer ${token}` } })
    .then((r) => (r.ok ? r.json() : null))
    .catch(() => null);
}

/** YYYY-MM-DD `n` days before `day` (calendar arithmetic, no time zone). */
function daysBefore(day, n) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d - n)).toISOString().slice(0, 10);
}

function kpi(id, text, bad = false) {
  const e = $(id);
  e.textContent = text;
  e.classList.toggle('bad', bad);
}

/** Cameras online (or degraded) of those shown: the selected grid's, or all. */
function camerasOnline() {
  if (!mosaic) return;
  const within = filter && map ? map.below.get(filter) : null;
  const cams = [...mosaic.cameras.values()]
    .filter((c) => !within || c.grid_ids.some((g) => within.has(g)));
  if (cams.length === 0) return kpi('kpi-online', '—');
  const up = cams.filter((c) => c.status === 'ONLINE' || c.status === 'DEGRADED').length;
  const pct = Math.round((100 * up) / cams.length);
  kpi('kpi-online', `${pct}%`, pct < 90);
}

/** Events per hour (county-wide), the week's alerts and today's key figures (the grid's). */
async function loadFigures() {
  const hours = await get('/api/stats/hours');
  if (!hours || !charts) return;
  charts.drawHours(hours);
  const grid = filter ? `&grid=${encodeURIComponent(filter)}` : '';
  const week = await get(`/api/stats?from=${daysBefore(hours.day, 6)}&to=${hours.day}${grid}`);
  if (!week) return;
  charts.drawWeek(week.days);
  const today = week.days[week.days.length - 1];
  if (!today) return;
  const pct = (x) => `${Math.round(x * 100)}%`;
  const none = today.reported === 0;
  kpi('kpi-closure', none ? '—' : pct(today.closure_rate));
  kpi('kpi-handling', none ? '—' : pct(today.handling_rate));
  const ack = today.mean_secs_to_acknowledge;
  kpi('kpi-ack', ack > 0 ? (ack < 120 ? `${Math.round(ack)} s` : `${Math.round(ack / 60)} min`) : '—');
  kpi('kpi-overdue', String(today.overdue), today.overdue > 0);
  kpi('kpi-alerts', `${today.alerts_opened} / ${today.alerts_resolved}`);
}

function queueDraw() {
  if (!drawQueued) {
    drawQueued = true;
    requestAnimationFrame(draw);
  }
}

function onMessage(msg) {
  if (msg.type === 'change' && msg.alert) {
    const a = msg.alert;
    if (a.status === 'RESOLVED') alerts.delete(a.id);
    else alerts.set(a.id, a);
    const serious = a.severity === 'CRITICAL' || a.severity === 'MAJOR';
    const shown = popups.get(a.id);
    if (a.status === 'RESOLVED' || (shown && !shown.detail && a.status !== 'OPEN')) closePopup(a.id);
    else if (shown) popup(a);
    else if (msg.kind === 'OPENED' && serious && !muted(a)) popup(a);
    queueDraw();
  } else if (msg.type === 'snapshot_end') {
    queueDraw();
  } else if (msg.type === 'camera') {
    mosaic?.update(msg.camera);
    queueDraw();
  }
}

function relabel() {
  i18n.apply();
  $('lang').textContent = i18n.t('lang');
  setState($('conn').dataset.state);
  if (loginError) showLoginError(loginError.key, loginError.status);
  mosaic?.layout();
  if (charts) {
    charts.drawHours(charts.hoursData);
    charts.drawWeek(charts.weekData);
  }
  for (const id of [...popups.keys()]) {
    const a = alerts.get(id);
    if (a) popup(a);
  }
  queueDraw();
}

async function start() {
  relabel();
  $('lang').onclick = () => {
    i18n.toggle();
    relabel();
  };
  const tick = () => {
    $('clock').textContent = time(Date.now());
  };
  tick();
  setInterval(tick, 1000);
  if (!token) {
    showLoginError('token_missing', 0);
    return;
  }
  const r = await fetch('/api/whoami', { headers: { authorization: `Bearer ${token}` } })
    .catch(() => null);
  if (!r || !r.ok) {
    showLoginError('token_refused', r?.status ?? 0);
    return;
  }
  who = await r.json();
  $('who').textContent = `${who.name} (${who.role})`;
  const deps = await get('/api/departments');
  if (deps) departments = new Map(deps.map((d) => [d.id, d.name]));
  charts = new DayCharts($('chart-hours'), $('chart-week'));
  const places = await get('/api/map');
  if (places) map = new GridMap($('map'), places, select);
  const cams = await get('/api/cameras');
  if (cams) mosaic = new Mosaic($('mosaic'), token, cams.cameras, i18n.t);
  loadFigures();
  setInterval(loadFigures, FIGURES_MS);
  $('filter-clear').onclick = () => (map ? map.select(null) : select(null));
  const stream = new AlertStream(token, {
    onMessage,
    onState: setState,
    onReset: () => {
      alerts.clear();
      for (const id of [...popups.keys()]) closePopup(id);
      queueDraw();
    },
  });
  stream.connect();
  // For tests and for a curious operator: the stream's cursor and the alerts held.
  window.gridsight = { stream, alerts, map, mosaic, charts, loadFigures, filter: () => filter };
}

start();
