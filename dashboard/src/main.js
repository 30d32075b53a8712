// The wall: open alerts live from the daemon's WebSocket, newest and most severe first; a
// new CRITICAL or MAJOR alert pops up with its picture and evidence and stays until someone
// acknowledges it (here or anywhere: every client sees the change); charts of what the
// stream brought; the grid map, where a click on a grid filters the feed and charts to it
// and beneath (pop-ups still come from everywhere); the camera mosaic. The token comes from
// the address (?token=...): a wrong one shows a login error, a viewer's shows no actions.
import { AlertStream } from './stream.js';
import * as i18n from './i18n.js';
import { Charts, SEVERITIES } from './charts.js';
import { GridMap } from './map.js';
import { Mosaic } from './mosaic.js';

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get('token') ?? '';
/** Alerts not resolved, by id. */
const alerts = new Map();
/** Pop-ups on screen, by alert id. */
const popups = new Map();
let who = null;
let charts = null;
let map = null;
let mosaic = null;
/** The grid selected on the map: the page shows it and what is beneath it. */
let filter = null;
let loginError = null;
let drawQueued = false;

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

async function acknowledge(id, button, errorEl) {
  const a = alerts.get(id);
  if (!a) return;
  button.disabled = true;
  errorEl.textContent = '';
  const r = await fetch(`/api/alerts/${encodeURIComponent(id)}/acknowledge`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ expected_version: a.version }),
  }).catch((e) => ({ ok: false, status: 0, text: async () => String(e) }));
  if (!r.ok) {
    errorEl.textContent = `${r.status}: ${await r.text()}`;
    button.disabled = false;
  }
  // On success the change comes back on the stream, as to every other client.
}

function popup(a) {
  const errorEl = el('p', { class: 'popup-error' });
  const actions = el('div', { class: 'popup-actions' });
  if (who?.may_operate) {
    const button = el('button', { type: 'button', class: 'ack', text: i18n.t('acknowledge') });
    button.onclick = () => acknowledge(a.id, button, errorEl);
    actions.append(button);
  }
  const box = el(
    'article',
    { class: `popup sev-${a.severity}`, 'data-alert': a.id },
    el('header', {},
      el('span', { class: 'sev', text: i18n.t(a.severity) }),
      el('h2', { text: a.title })),
    el('p', { class: 'where', text: `${i18n.t('grid')} ${a.grid_id} · ${time(a.first_seen_ms)}` }),
    picture(a),
    el('h3', { text: i18n.t('evidence') }),
    el('ol', { class: 'timeline' }, ...(a.evidence ?? []).map(evidenceLine)),
    actions,
    errorEl,
  );
  popups.get(a.id)?.remove();
  popups.set(a.id, box);
  $('popups').prepend(box);
}

function closePopup(id) {
  popups.get(id)?.remove();
  popups.delete(id);
}

function feedItem(a) {
  const status = a.status === 'ACKNOWLEDGED'
    ? `${i18n.t('acknowledged_by')}${a.acknowledged_by}`
    : i18n.t(a.status);
  return el(
    'li',
    { class: `alert sev-${a.severity}${muted(a) ? ' muted' : ''}`, 'data-alert': a.id },
    el('span', { class: 'sev', text: i18n.t(a.severity) }),
    el('span', { class: 'title', text: a.title }),
    el('span', { class: 'meta' },
      el('span', { class: 'grid', text: a.grid_id }),
      el('span', { class: 'n', text: `×${a.count}` }),
      el('time', { text: time(a.last_seen_ms) })),
    el('span', { class: `status st-${a.status}`, text: status }),
  );
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
  charts?.draw(list);
  map?.draw(all);
}

function select(id) {
  filter = id;
  mosaic?.setGrids(id && map ? map.below.get(id) : null);
  $('filter').hidden = !id;
  $('filter-name').textContent = id ? `${id}` : '';
  queueDraw();
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
    if (msg.kind !== 'SNAPSHOT') charts?.countChange(a.updated_at_ms ?? Date.now());
    const serious = a.severity === 'CRITICAL' || a.severity === 'MAJOR';
    if (a.status !== 'OPEN') closePopup(a.id);
    else if (msg.kind === 'OPENED' && serious && !muted(a)) popup(a);
    else if (popups.has(a.id)) popup(a);
    queueDraw();
  } else if (msg.type === 'snapshot_end') {
    queueDraw();
  } else if (msg.type === 'camera') {
    mosaic?.update(msg.camera);
  }
}

function relabel() {
  i18n.apply();
  $('lang').textContent = i18n.t('lang');
  setState($('conn').dataset.state);
  if (loginError) showLoginError(loginError.key, loginError.status);
  mosaic?.layout();
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
  setInterval(() => {
    $('clock').textContent = time(Date.now());
  }, 1000);
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
  charts = new Charts($('chart-severity'), $('chart-changes'));
  const places = await fetch('/api/map', { headers: { authorization: `Bearer ${token}` } })
    .then((m) => (m.ok ? m.json() : null))
    .catch(() => null);
  if (places) map = new GridMap($('map'), places, select);
  const cams = await fetch('/api/cameras', { headers: { authorization: `Bearer ${token}` } })
    .then((m) => (m.ok ? m.json() : null))
    .catch(() => null);
  if (cams) mosaic = new Mosaic($('mosaic'), token, cams.cameras, i18n.t);
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
  window.gridsight = { stream, alerts, map, mosaic, filter: () => filter };
}

start();
