// The grid map (ECharts `geo`): the deepest grids' polygons from /api/map, each coloured by
// the worst open alert on it, beneath it or on a grid above it; cameras (squares, red when
// offline) and listed sensors (dots, red while an open alert's evidence names them) at their
// places; the alerts popped up on the wall as rippling rings at their places (`place`: the
// first located evidence, else the listed sensor or the first camera, else the grid's
// centre). A click on a grid, or on a camera, sensor or ring in it, selects it (and so
// filters the page to it and beneath); a click on the selected grid, or on the sea around,
// clears it.
import * as echarts from 'echarts/core';
import { EffectScatterChart, ScatterChart } from 'echarts/charts';
import { GeoComponent, TooltipComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';
import { COLOURS, SEVERITIES } from './charts.js';

echarts.use([EffectScatterChart, ScatterChart, GeoComponent, TooltipComponent, CanvasRenderer]);

const IDLE = '#1a2745';
const BORDER = '#3b4d78';
const SELECTED = '#ffffff';

/** Grid ids with everything beneath them, from the parent links. */
export function descendants(grids) {
  const children = new Map();
  for (const g of grids) {
    if (g.parent) children.set(g.parent, [...(children.get(g.parent) ?? []), g.id]);
  }
  const below = new Map();
  const walk = (id) => {
    if (below.has(id)) return below.get(id);
    const set = new Set([id]);
    below.set(id, set);
    for (const c of children.get(id) ?? []) for (const d of walk(c)) set.add(d);
    return set;
  };
  for (const g of grids) walk(g.id);
  return below;
}

/** The mean of a closed ring's points (the last repeats the first), as [lon, lat]. */
function centroid(polygon) {
  const ring = polygon.slice(0, -1);
  return ring.reduce((a, p) => [a[0] + p[0] / ring.length, a[1] + p[1] / ring.length], [0, 0]);
}

export class GridMap {
  constructor(el, data, onSelect) {
    this.data = data;
    this.cameraAt = new Map(data.cameras.filter((c) => c.location).map((c) => [c.id, c.location]));
    this.sensorAt = new Map(data.sensors.filter((s) => s.location).map((s) => [s.id, s.location]));
    this.gridAt = new Map(data.grids.filter((g) => Array.isArray(g.polygon) && g.polygon.length >= 4)
      .map((g) => [g.id, centroid(g.polygon)]));
    this.onSelect = onSelect;
    this.selected = null;
    this.below = descendants(data.grids);
    this.parents = new Map(data.grids.map((g) => [g.id, g.parent]));
    // The deepest grids with polygons: a town drawn over its communities would hide them
    // (alerts on a town colour the communities beneath it through `worst`).
    const shaped = data.grids.filter((g) => Array.isArray(g.polygon) && g.polygon.length >= 4);
    const withShapedChild = new Set(shaped.map((g) => g.parent).filter(Boolean));
    const drawn = shaped.filter((g) => !withShapedChild.has(g.id));
    this.drawn = drawn;
    echarts.registerMap('grids', {
      type: 'FeatureCollection',
      features: drawn.map((g) => ({
        type: 'Feature',
        properties: { name: g.id },
        geometry: { type: 'Polygon', coordinates: [g.polygon] },
      })),
    });
    this.chart = echarts.init(el, null, { renderer: 'canvas' });
    this.last = [];
    this.popped = new Set();
    new ResizeObserver(() => {
      this.chart.resize();
      this.draw(this.last, this.popped);
    }).observe(el);
    // A click on a camera, a sensor or a ring selects the grid it is in.
    this.gridOf = new Map([
      ...data.cameras.filter((c) => c.grid_ids?.length).map((c) => [c.id, c.grid_ids[0]]),
      ...data.sensors.map((s) => [s.id, s.grid_id]),
    ]);
    this.chart.on('click', (p) => {
      const id = p.componentType === 'geo' ? p.name : (this.gridOf.get(p.name) ?? p.data?.grid ?? null);
      this.select(id && id !== this.selected ? id : null);
    });
    this.chart.getZr().on('click', (e) => {
      if (!e.target) this.select(null);
    });
  }

  /**
   * Where alert `a` is, as [lon, lat]: its first evidence with a location, else the listed
   * sensor or the first camera it names, else the centre of its grid (or of the first grid
   * beneath it with a shape); null when none of these is known.
   */
  place(a) {
    for (const e of a.evidence ?? []) {
      if (e.location) return [e.location.lon, e.location.lat];
      if (e.source === 'sensor' && this.sensorAt.has(e.sensor_id)) return this.sensorAt.get(e.sensor_id);
      if (e.source === 'camera' && this.cameraAt.has(e.camera_id)) return this.cameraAt.get(e.camera_id);
    }
    const cam = (a.camera_ids ?? []).find((c) => this.cameraAt.has(c));
    if (cam) return this.cameraAt.get(cam);
    if (this.gridAt.has(a.grid_id)) return this.gridAt.get(a.grid_id);
    for (const g of this.below.get(a.grid_id) ?? []) if (this.gridAt.has(g)) return this.gridAt.get(g);
    return null;
  }

  select(id) {
    this.selected = id;
    this.onSelect(id);
    this.draw(this.last, this.popped);
  }

  /**
   * The worst severity of `alerts` for each drawn grid: alerts on it, beneath it, or on a
   * grid above it (a town's alert colours its communities).
   */
  worst(alerts) {
    const rank = new Map();
    const note = (g, r) => {
      if (!rank.has(g) || rank.get(g) > r) rank.set(g, r);
    };
    for (const a of alerts) {
      const r = SEVERITIES.indexOf(a.severity);
      if (r < 0 || a.silenced_by || a.inhibited_by) continue;
      // Up: the grids that hold it; down: the drawn grids beneath it.
      for (let g = a.grid_id; g; g = this.parents.get(g)) note(g, r);
      for (const g of this.below.get(a.grid_id) ?? []) note(g, r);
    }
    return rank;
  }

  /** Draws the grids coloured by `alerts`, and rings at the places of those in `popped`. */
  draw(alerts, popped = new Set()) {
    this.last = alerts;
    this.popped = popped;
    const size = parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
    const worst = this.worst(alerts);
    const inAlarm = new Set();
    for (const a of alerts) {
      for (const e of a.evidence ?? []) if (e.source === 'sensor') inAlarm.add(e.sensor_id);
    }
    const regions = this.drawn.map((g) => {
      const r = worst.get(g.id);
      return {
        name: g.id,
        itemStyle: {
          areaColor: r === undefined ? IDLE : COLOURS[SEVERITIES[r]],
          borderColor: g.id === this.selected ? SELECTED : BORDER,
          borderWidth: g.id === this.selected ? 3 : 1,
        },
      };
    });
    const cameras = this.data.cameras.filter((c) => c.location).map((c) => ({
      name: c.id,
      value: [...c.location, c.status],
      itemStyle: { color: c.status === 'OFFLINE' ? '#ff4d4f' : '#7ff0a4' },
    }));
    const sensors = this.data.sensors.map((s) => ({
      name: s.id,
      value: s.location,
      itemStyle: { color: inAlarm.has(s.id) ? '#ff4d4f' : '#9aa7c0' },
    }));
    const rings = alerts.filter((a) => popped.has(a.id)).map((a) => ({ a, at: this.place(a) }))
      .filter((r) => r.at).map(({ a, at }) => ({
        name: a.id,
        grid: a.grid_id,
        value: at,
        // White: the grid beneath is already in the severity's colour.
        itemStyle: { color: '#ffffff', borderColor: COLOURS[a.severity] ?? '#ff4d4f', borderWidth: 2 },
      }));
    this.chart.setOption({
      animation: false,
      tooltip: { trigger: 'item', formatter: (p) => p.name },
      geo: {
        map: 'grids',
        roam: true,
        aspectScale: 1 / Math.cos((30 * Math.PI) / 180),
        // Names only where cells are few enough to hold them; otherwise on hover.
        label: { show: this.drawn.length <= 16, color: '#dfe6f5', fontSize: size * 0.7 },
        itemStyle: { areaColor: IDLE, borderColor: BORDER },
        emphasis: { label: { show: true, color: '#fff' }, itemStyle: { areaColor: '#2d4270' } },
        regions,
      },
      series: [
        { type: 'scatter', coordinateSystem: 'geo', symbol: 'rect', symbolSize: size * 0.7, data: cameras },
        { type: 'scatter', coordinateSystem: 'geo', symbol: 'circle', symbolSize: size * 0.45, data: sensors },
        {
          type: 'effectScatter', coordinateSystem: 'geo', symbolSize: size * 0.9, data: rings, zlevel: 1,
          rippleEffect: { scale: 5, brushType: 'stroke', color: '#ffffff' },
        },
      ],
    });
  }

  /** Where grid `id`'s centroid (the mean of its ring) is on the page, for tests. */
  pixelOf(id) {
    const g = this.drawn.find((x) => x.id === id);
    if (!g) return null;
    const [x, y] = this.chart.convertToPixel({ geoIndex: 0 }, centroid(g.polygon));
    const box = this.chart.getDom().getBoundingClientRect();
    return { x: box.left + x, y: box.top + y };
  }
}
