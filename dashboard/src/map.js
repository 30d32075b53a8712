// The grid map (ECharts `geo`): the deepest grids' polygons from /api/map, each coloured by
// the worst open alert on it, beneath it or on a grid above it; cameras (squares, red when
// offline) and listed sensors (dots, red while an open alert's evidence names them) at their
// places. A click on a grid selects it (and so filters the page to it and beneath); a click
// on the selected grid, or on the sea around, clears it.
import * as echarts from 'echarts/core';
import { ScatterChart } from 'echarts/charts';
import { GeoComponent, TooltipComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';
import { COLOURS, SEVERITIES } from './charts.js';

echarts.use([ScatterChart, GeoComponent, TooltipComponent, CanvasRenderer]);

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

export class GridMap {
  constructor(el, data, onSelect) {
    this.data = data;
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
    new ResizeObserver(() => {
      this.chart.resize();
      this.draw(this.last);
    }).observe(el);
    this.chart.on('click', (p) => {
      const id = p.componentType === 'geo' ? p.name : null;
      this.select(id && id !== this.selected ? id : null);
    });
    this.chart.getZr().on('click', (e) => {
      if (!e.target) this.select(null);
    });
  }

  select(id) {
    this.selected = id;
    this.onSelect(id);
    this.draw(this.last);
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

  draw(alerts) {
    this.last = alerts;
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
      ],
    });
  }

  /** Where grid `id`'s centroid (the mean of its ring) is on the page, for tests. */
  pixelOf(id) {
    const g = this.drawn.find((x) => x.id === id);
    if (!g) return null;
    const ring = g.polygon.slice(0, -1);
    const c = ring.reduce((a, p) => [a[0] + p[0] / ring.length, a[1] + p[1] / ring.length], [0, 0]);
    const [x, y] = this.chart.convertToPixel({ geoIndex: 0 }, c);
    const box = this.chart.getDom().getBoundingClientRect();
    return { x: box.left + x, y: box.top + y };
  }
}
