// The wall's figures of the day, drawn with ECharts (bundled from the npm registry at build
// time): events per hour by source today, and alerts opened against resolved over the last
// seven days. The key figures beside them (closure and handling rate, time to acknowledge,
// overdue incidents, cameras online) are plain text, big enough to read across the room.
import * as echarts from 'echarts/core';
import { BarChart } from 'echarts/charts';
import { GridComponent, LegendComponent, TooltipComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';
import { t } from './i18n.js';

echarts.use([BarChart, GridComponent, LegendComponent, TooltipComponent, CanvasRenderer]);

export const SEVERITIES = ['CRITICAL', 'MAJOR', 'MINOR', 'WARNING', 'INFO'];
export const COLOURS = {
  CRITICAL: '#ff4d4f', MAJOR: '#ff9c2e', MINOR: '#fadb14', WARNING: '#52a8ff', INFO: '#9aa7c0',
};
const SOURCE_COLOURS = { sensor: '#52a8ff', camera: '#7ff0a4', incident: '#ff9c2e' };
const TEXT = '#dfe6f5';

function fontSize() {
  return parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
}

function chart(el, redraw) {
  const c = echarts.init(el, null, { renderer: 'canvas' });
  // Sizes follow the root font size, which follows the screen: redraw, not just stretch.
  new ResizeObserver(() => {
    c.resize();
    redraw();
  }).observe(el);
  return c;
}

function axes(size, categories) {
  return {
    grid: { left: size * 3, right: size, top: size * 2.2, bottom: size * 1.8 },
    legend: { top: 0, textStyle: { color: TEXT, fontSize: size * 0.8 } },
    tooltip: { trigger: 'axis' },
    xAxis: { type: 'category', data: categories, axisLabel: { color: TEXT, fontSize: size * 0.7 } },
    yAxis: { type: 'value', minInterval: 1, axisLabel: { color: TEXT, fontSize: size * 0.7 } },
  };
}

export class DayCharts {
  constructor(hoursEl, weekEl) {
    this.hoursData = null;
    this.weekData = null;
    this.hours = chart(hoursEl, () => this.drawHours(this.hoursData));
    this.week = chart(weekEl, () => this.drawWeek(this.weekData));
  }

  /** `{sources, hours: [{hour, sensor, camera, incident}]}` of /api/stats/hours. */
  drawHours(data) {
    this.hoursData = data;
    if (!data) return;
    const size = fontSize();
    this.hours.setOption({
      animation: false,
      ...axes(size, data.hours.map((h) => String(h.hour).padStart(2, '0'))),
      series: data.sources.map((s) => ({
        name: t(s),
        type: 'bar',
        stack: 'events',
        data: data.hours.map((h) => h[s]),
        itemStyle: { color: SOURCE_COLOURS[s] },
      })),
    }, true);
  }

  /** The `days` of /api/stats over a week. */
  drawWeek(days) {
    this.weekData = days;
    if (!days) return;
    const size = fontSize();
    this.week.setOption({
      animation: false,
      ...axes(size, days.map((d) => d.day.slice(5))),
      series: [
        { name: t('opened'), type: 'bar', data: days.map((d) => d.alerts_opened), itemStyle: { color: COLOURS.MAJOR } },
        { name: t('resolved'), type: 'bar', data: days.map((d) => d.alerts_resolved), itemStyle: { color: '#7ff0a4' } },
      ],
    }, true);
  }
}
