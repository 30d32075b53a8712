// The wall's charts, drawn with ECharts (bundled from the npm registry at build time):
// open alerts by severity, and alert changes per minute over the last hour, both from
// what the stream has delivered.
import * as echarts from 'echarts/core';
import { BarChart, LineChart } from 'echarts/charts';
import { GridComponent, TooltipComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';
import { t } from './i18n.js';

echarts.use([BarChart, LineChart, GridComponent, TooltipComponent, CanvasRenderer]);

export const SEVERITIES = ['CRITICAL', 'MAJOR', 'MINOR', 'WARNING', 'INFO'];
export const COLOURS = {
  CRITICAL: '#ff4d4f', MAJOR: '#ff9c2e', MINOR: '#fadb14', WARNING: '#52a8ff', INFO: '#9aa7c0',
};

const TEXT = '#dfe6f5';

function base(el, redraw) {
  const chart = echarts.init(el, null, { renderer: 'canvas' });
  // Sizes follow the root font size, which follows the screen: redraw, not just stretch.
  new ResizeObserver(() => {
    chart.resize();
    redraw();
  }).observe(el);
  return chart;
}

function fontSize() {
  return parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
}

export class Charts {
  constructor(severityEl, changesEl) {
    this.last = [];
    this.severity = base(severityEl, () => this.draw(this.last));
    this.changes = base(changesEl, () => this.draw(this.last));
    // Changes per minute, keyed by the minute's start (ms), for the last hour.
    this.perMinute = new Map();
  }

  countChange(atMs) {
    const minute = Math.floor(atMs / 60000) * 60000;
    this.perMinute.set(minute, (this.perMinute.get(minute) ?? 0) + 1);
    for (const m of this.perMinute.keys()) if (m < minute - 3600000) this.perMinute.delete(m);
  }

  draw(openAlerts) {
    this.last = openAlerts;
    const size = fontSize();
    const counts = SEVERITIES.map((s) => openAlerts.filter((a) => a.severity === s).length);
    this.severity.setOption({
      animation: false,
      grid: { left: size * 5, right: size, top: size, bottom: size * 2 },
      xAxis: { type: 'value', minInterval: 1, axisLabel: { color: TEXT, fontSize: size * 0.8 } },
      yAxis: {
        type: 'category',
        inverse: true,
        data: SEVERITIES.map((s) => t(s)),
        axisLabel: { color: TEXT, fontSize: size },
      },
      series: [{
        type: 'bar',
        data: counts.map((v, i) => ({ value: v, itemStyle: { color: COLOURS[SEVERITIES[i]] } })),
        label: { show: true, position: 'right', color: TEXT, fontSize: size },
      }],
    });
    const now = Math.floor(Date.now() / 60000) * 60000;
    const minutes = [];
    for (let m = now - 59 * 60000; m <= now; m += 60000) minutes.push(m);
    this.changes.setOption({
      animation: false,
      grid: { left: size * 3, right: size, top: size, bottom: size * 2 },
      tooltip: { trigger: 'axis' },
      xAxis: {
        type: 'category',
        data: minutes.map((m) => new Date(m).toTimeString().slice(0, 5)),
        axisLabel: { color: TEXT, fontSize: size * 0.7 },
      },
      yAxis: { type: 'value', minInterval: 1, axisLabel: { color: TEXT, fontSize: size * 0.7 } },
      series: [{
        type: 'line',
        data: minutes.map((m) => this.perMinute.get(m) ?? 0),
        areaStyle: { opacity: 0.2 },
        lineStyle: { color: '#52a8ff', width: 2 },
        itemStyle: { color: '#52a8ff' },
        showSymbol: false,
      }],
    });
  }
}
