// Drives the wall in Debian's headless Chromium (playwright-core) for tests/e2e_dashboard.rs,
// which starts the daemon, the broker and the cameras and does the rest. It talks over
// stdout, one line each: `READY`, `ACKED {json}`, `DONE {json}` (or `LOGIN {json}`), and
// `FAIL message` when something the test waits for never shows.
//
//   node wall.mjs login URL          the page with a wrong token
//   node wall.mjs wall URL SHOTS VIEWER_URL
//                                    the live page with an operator's token, and a second
//                                    page with a viewer's (another client of the same wall)
import { chromium } from 'playwright-core';
import { existsSync, mkdirSync } from 'node:fs';

const [mode, url, shots, viewerUrl] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM
  ?? ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p));

function say(word, data) {
  process.stdout.write(data === undefined ? `${word}\n` : `${word} ${JSON.stringify(data)}\n`);
}

async function wait(what, promise) {
  try {
    return await promise;
  } catch (e) {
    say('FAIL', `${what}: ${e.message.split('\n')[0]}`);
    process.exit(1);
  }
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
const errors = [];
let watching = true;
page.on('console', (m) => {
  if (watching && m.type() === 'error') errors.push(m.text());
});
page.on('pageerror', (e) => errors.push(String(e)));

/** After two animation frames: the page draws the feed at the next frame after a change. */
function frames() {
  return page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

/** Overflow to the side at the current size, and a screenshot. */
async function shot(name, width, height) {
  await page.setViewportSize({ width, height });
  // The charts and tiles redraw on resize at the next frames.
  await frames();
  await frames();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: `${shots}/${name}.png` });
  return { name, width, height, overflow };
}

if (mode === 'login') {
  await page.goto(url);
  await wait('the login error', page.locator('#login').waitFor({ state: 'visible', timeout: 10000 }));
  say('LOGIN', {
    text: await page.locator('#login').innerText(),
    wall_visible: await page.locator('#wall').isVisible(),
    errors: errors.filter((e) => !e.includes('401')),
  });
} else if (mode === 'wall') {
  await page.goto(url);
  await wait('the stream to be live', page.locator('#conn[data-state="live"]').waitFor({ timeout: 10000 }));
  await page.evaluate(() => { window.__sameLoad = true; });
  const other = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
  await other.goto(viewerUrl);
  await wait("the viewer's stream to be live", other.locator('#conn[data-state="live"]').waitFor({ timeout: 10000 }));
  say('READY');

  const popup = page.locator('.popup').first();
  await wait('a pop-up', popup.waitFor({ state: 'visible', timeout: 15000 }));
  const popupAt = Date.now();
  const img = popup.locator('img.snapshot');
  await wait('the snapshot to load', page.waitForFunction(
    () => document.querySelector('.popup img.snapshot')?.naturalWidth > 0, null, { timeout: 10000 },
  ));
  const naturalWidth = await img.evaluate((i) => i.naturalWidth);
  const popupText = await popup.innerText();
  // The popped-up alert rings on the map at its place, inside its grid.
  await frames();
  const ring = await page.evaluate(() => {
    const m = window.gridsight.map;
    const [r] = m.chart.getOption().series[2].data;
    if (!r) return null;
    const g = m.data.grids.find((x) => x.id === 'a11');
    const xs = g.polygon.map((p) => p[0]);
    const ys = g.polygon.map((p) => p[1]);
    const [lon, lat] = r.value;
    return {
      alert: r.name,
      in_a11: lon >= Math.min(...xs) && lon <= Math.max(...xs) && lat >= Math.min(...ys) && lat <= Math.max(...ys),
    };
  });
  // The figures of the day, read again now that the alarm is in.
  await page.evaluate(() => window.gridsight.loadFigures());
  const figures = await page.evaluate(() => {
    const sum = (xs) => xs.reduce((a, b) => a + (Number(b) || 0), 0);
    const hours = window.gridsight.charts.hours.getOption().series;
    const week = window.gridsight.charts.week.getOption().series;
    return {
      readings_today: sum(hours[0].data),
      opened_today: week[0].data[week[0].data.length - 1],
      cameras_online: document.querySelector('#kpi-online').textContent,
      alerts_today: document.querySelector('#kpi-alerts').textContent,
    };
  });
  const screens = [await shot('wall-1920x1080', 1920, 1080), await shot('wall-3840x2160', 3840, 2160)];
  await page.setViewportSize({ width: 1920, height: 1080 });
  const consoleErrors = [...errors];
  // The viewer's page has the pop-up too, without actions.
  const otherPopup = other.locator('.popup').first();
  await wait("the pop-up on the viewer's page", otherPopup.waitFor({ state: 'visible', timeout: 10000 }));
  const viewerButtons = await otherPopup.locator('button').count();
  await popup.locator('button.ack').click();
  await wait('the pop-up to close after acknowledging', popup.waitFor({ state: 'detached', timeout: 10000 }));
  // ...and it closes there too, at once, saying who acknowledged.
  await wait("the pop-up to close on the viewer's page", otherPopup.waitFor({ state: 'detached', timeout: 10000 }));
  // (The feed is drawn at the next frame: wait for it rather than read it at once.)
  await wait("the viewer's row to say who acknowledged", other.waitForFunction(
    () => [...document.querySelectorAll('#feed .alert')]
      .some((r) => r.textContent.includes('smk-1') && r.querySelector('.st-ACKNOWLEDGED')),
    null,
    { timeout: 10000 },
  ));
  const viewerRow = await other.locator('#feed .alert', { hasText: 'smk-1' }).first().innerText();
  // The viewer switches the labels to English.
  await other.locator('#lang').click();
  const englishTitle = await other.locator('header h1').innerText();
  await other.close();
  const row = page.locator('#feed .alert', { hasText: 'smk-1' }).first();
  await wait('the row to show who acknowledged', page.waitForFunction(
    () => document.querySelector('#feed .st-ACKNOWLEDGED') !== null, null, { timeout: 10000 },
  ));
  const rowText = await row.innerText();
  // The map: the alert's grid in its severity's colour; a click on a grid filters the
  // feed to it, the button shows all again.
  const map = {};
  map.colour = await page.evaluate(() => window.gridsight.map.chart.getOption().geo[0].regions
    .find((r) => r.name === 'a11')?.itemStyle?.areaColor);
  const clickGrid = async (id) => {
    const at = await page.evaluate((g) => window.gridsight.map.pixelOf(g), id);
    await page.mouse.click(at.x, at.y);
    await page.waitForFunction((g) => window.gridsight.filter() === g, id, { timeout: 5000 });
    await frames();
    return { filter: id, shown: Number(await page.locator('#open-count').innerText()) };
  };
  map.empty_grid = await wait('a click on a01', clickGrid('a01'));
  map.alert_grid = await wait('a click on a11', clickGrid('a11'));
  await page.locator('#filter-clear').click();
  await page.waitForFunction(() => window.gridsight.filter() === null, null, { timeout: 5000 });
  await frames();
  map.cleared = Number(await page.locator('#open-count').innerText());

  // The mosaic: the healthy camera's tile shows a picture and refreshes it; the test then
  // takes the other camera down, and its tile must say so instead of a stale picture.
  const tile = (id) => `.tile[data-camera="${id}"]`;
  const mosaic = {};
  await wait('a picture in the tile of cam-a11', page.waitForFunction(
    (sel) => document.querySelector(`${sel} img`)?.naturalWidth > 0, tile('cam-a11'), { timeout: 10000 },
  ));
  const firstSrc = await page.locator(`${tile('cam-a11')} img`).getAttribute('src');
  await wait('the tile of cam-a11 to refresh', page.waitForFunction(
    ([sel, before]) => {
      const img = document.querySelector(`${sel} img`);
      return img && img.getAttribute('src') !== before && img.naturalWidth > 0;
    },
    [tile('cam-a11'), firstSrc],
    { timeout: 5000 },
  ));
  mosaic.tiles = await page.locator('.tile').count();
  say('MOSAIC', mosaic);
  await wait('the tile of cam-a00 to show it offline', page.waitForFunction(
    (sel) => document.querySelector(sel)?.dataset.status === 'OFFLINE'
      && !document.querySelector(`${sel} img`),
    tile('cam-a00'),
    { timeout: 20000 },
  ));
  mosaic.offline_text = await page.locator(`${tile('cam-a00')} .tile-state`).innerText();

  // From the feed, the operator opens the alert, adds a note and resolves it.
  await row.click();
  const panel = page.locator('.popup.detail').first();
  await wait('the alert panel', panel.waitFor({ state: 'visible', timeout: 5000 }));
  await panel.locator('.note-text').fill('crew on site');
  await panel.locator('button.add-note').click();
  await wait('the note on the panel', page.waitForFunction(
    () => document.querySelector('.popup.detail .notes')?.textContent.includes('crew on site'),
    null,
    { timeout: 10000 },
  ));
  const noteShown = await panel.locator('.notes').innerText();
  // ...dispatches its work to a department within 30 minutes, with a word for the crew...
  await panel.locator('select.dispatch-dept').selectOption('fire');
  await panel.locator('select.dispatch-within').selectOption('30');
  await panel.locator('.note-text').fill('send the fire crew');
  const clickedMs = Date.now();
  await panel.locator('button.dispatch').click();
  await wait('the dispatched work on the panel', page.waitForFunction(
    () => document.querySelector('.popup.detail .work .inc-DISPATCHED') !== null,
    null,
    { timeout: 10000 },
  ));
  const shownMs = Date.now();
  await wait('the work badge in the feed', page.waitForFunction(
    () => document.querySelector('#feed .work-badge') !== null, null, { timeout: 10000 },
  ));
  const dispatch = {
    work: await panel.locator('.work').innerText(),
    badge: await page.locator('#feed .work-badge').first().innerText(),
    departments: await panel.locator('select.dispatch-dept option').allInnerTexts(),
    note_cleared: (await panel.locator('.note-text').inputValue()) === '',
    clicked_ms: clickedMs,
    shown_ms: shownMs,
  };
  dispatch.screen = await shot('panel-dispatched-1920x1080', 1920, 1080);
  await panel.locator('button.resolve').click();
  await wait('the resolved alert to leave the feed and its panel to close', page.waitForFunction(
    () => !document.querySelector('.popup.detail')
      && ![...document.querySelectorAll('#feed .alert .title')].some((t) => t.textContent.includes('smk-1')),
    null,
    { timeout: 10000 },
  ));

  say('ACKED', {
    viewer: { buttons: viewerButtons, row: viewerRow, english_title: englishTitle },
    note_shown: noteShown,
    dispatch,
    figures,
    mosaic,
    map,
    popup_at_ms: popupAt,
    natural_width: naturalWidth,
    popup_text: popupText,
    ring,
    screens,
    console_errors: consoleErrors,
    row_text: rowText,
  });

  // The daemon goes away and comes back: the page says so, then catches up by itself.
  watching = false;
  await wait('the lost-connection banner', page.locator('#lost').waitFor({ state: 'visible', timeout: 20000 }));
  const lostText = await page.locator('#lost').innerText();
  await wait('the stream to be live again', page.locator('#conn[data-state="live"]').waitFor({ timeout: 30000 }));
  await wait('the alert published while it was down', page.waitForFunction(
    () => [...document.querySelectorAll('#feed .alert .grid')].some((g) => g.textContent === 'b00'),
    null,
    { timeout: 20000 },
  ));
  say('DONE', {
    lost_text: lostText,
    lost_hidden_after: await page.locator('#lost').isHidden(),
    same_load: await page.evaluate(() => window.__sameLoad === true),
    grids: await page.locator('#feed .alert .grid').allInnerTexts(),
  });
} else {
  say('FAIL', `unknown mode ${mode}`);
}
await browser.close();
