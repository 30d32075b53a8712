// Labels in Chinese (the default: the centres' language) and English, switchable; the
// choice is kept in localStorage. `t(key)` returns the label, `apply()` fills every
// element with a `data-i18n` attribute.
const LABELS = {
  zh: {
    title: '城市运行指挥中心 · 告警',
    open_alerts: '当前告警',
    grid_map: '网格地图',
    cameras: '视频监控',
    camera_OFFLINE: '离线', camera_FROZEN: '画面冻结', camera_CONNECTING: '连接中',
    camera_UNKNOWN: '状态未知',
    show_all: '全部',
    figures_of_the_day: '今日指标',
    closure_rate: '结案率',
    handling_rate: '处置率',
    time_to_ack: '平均确认时长',
    overdue: '超期工单',
    cameras_online: '摄像机在线率',
    alerts_today: '今日告警 新增/解除',
    events_per_hour: '每小时事件（按来源）',
    alerts_week: '近七天告警 新增/解除',
    opened: '新增',
    resolved: '解除',
    connecting: '连接中…',
    live: '实时',
    lost: '连接已断开，正在重连…',
    login_failed: '登录失败',
    token_refused: '令牌无效或无权查看：请检查地址中的 token。',
    token_missing: '地址中缺少 token（?token=...）。',
    acknowledge: '确认',
    resolve_action: '解除',
    add_note: '添加备注',
    note_placeholder: '备注…',
    notes: '备注',
    close: '关闭',
    acknowledged_by: '已确认：',
    evidence: '证据',
    no_picture: '无图像',
    grid: '网格',
    count: '次数',
    lang: 'English',
    CRITICAL: '特急', MAJOR: '紧急', MINOR: '一般', WARNING: '提示', INFO: '信息',
    OPEN: '待处理', ACKNOWLEDGED: '已确认', RESOLVED: '已解除',
    sensor: '传感器', camera: '摄像机', incident: '上报',
    work: '处置',
    position: '位置（地图上闪烁处）',
    dispatch: '派遣',
    department: '部门',
    due: '期限',
    overdue_flag: '已超期',
    within_30: '30 分钟内', within_60: '1 小时内', within_120: '2 小时内', within_240: '4 小时内',
    within_1440: '24 小时内',
    inc_REPORTED: '已上报', inc_ACCEPTED: '已受理', inc_DISPATCHED: '已派遣', inc_IN_PROGRESS: '处置中',
    inc_RESOLVED: '已办结', inc_CLOSED: '已结案', inc_CANCELLED: '已撤销', inc_UNFOUNDED: '不属实',
    inc_DUPLICATE: '重复',
  },
  en: {
    title: 'City command centre · alerts',
    open_alerts: 'Open alerts',
    grid_map: 'Grid map',
    cameras: 'Cameras',
    camera_OFFLINE: 'Offline', camera_FROZEN: 'Frozen', camera_CONNECTING: 'Connecting',
    camera_UNKNOWN: 'Status unknown',
    show_all: 'Show all',
    figures_of_the_day: 'Figures of the day',
    closure_rate: 'Closure rate',
    handling_rate: 'Handling rate',
    time_to_ack: 'Mean time to acknowledge',
    overdue: 'Overdue incidents',
    cameras_online: 'Cameras online',
    alerts_today: 'Alerts today, opened / resolved',
    events_per_hour: 'Events per hour, by source',
    alerts_week: 'Alerts over 7 days, opened / resolved',
    opened: 'Opened',
    resolved: 'Resolved',
    connecting: 'Connecting…',
    live: 'Live',
    lost: 'Connection lost — reconnecting…',
    login_failed: 'Login failed',
    token_refused: 'The token was refused or may not read: check the token in the address.',
    token_missing: 'No token in the address (?token=...).',
    acknowledge: 'Acknowledge',
    resolve_action: 'Resolve',
    add_note: 'Add note',
    note_placeholder: 'Note…',
    notes: 'Notes',
    close: 'Close',
    acknowledged_by: 'Acknowledged by ',
    evidence: 'Evidence',
    no_picture: 'No picture',
    grid: 'Grid',
    count: 'Count',
    lang: '中文',
    CRITICAL: 'Critical', MAJOR: 'Major', MINOR: 'Minor', WARNING: 'Warning', INFO: 'Info',
    OPEN: 'Open', ACKNOWLEDGED: 'Acknowledged', RESOLVED: 'Resolved',
    sensor: 'Sensor', camera: 'Camera', incident: 'Report',
    work: 'Work',
    position: 'Position (pulsing on the map)',
    dispatch: 'Dispatch',
    department: 'Department',
    due: 'due',
    overdue_flag: 'overdue',
    within_30: 'within 30 min', within_60: 'within 1 h', within_120: 'within 2 h', within_240: 'within 4 h',
    within_1440: 'within 24 h',
    inc_REPORTED: 'Reported', inc_ACCEPTED: 'Accepted', inc_DISPATCHED: 'Dispatched', inc_IN_PROGRESS: 'In progress',
    inc_RESOLVED: 'Resolved', inc_CLOSED: 'Closed', inc_CANCELLED: 'Cancelled', inc_UNFOUNDED: 'Unfounded',
    inc_DUPLICATE: 'Duplicate',
  },
};

let lang = (() => {
  try {
    const saved = localStorage.getItem('gridsight.lang');
    return saved in LABELS ? saved : 'zh';
  } catch {
    return 'zh';
  }
})();

export function current() {
  return lang;
}

export function t(key) {
  return LABELS[lang][key] ?? LABELS.en[key] ?? key;
}

export function apply(root = document) {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
}

export function toggle() {
  lang = lang === 'zh' ? 'en' : 'zh';
  try {
    localStorage.setItem('gridsight.lang', lang);
  } catch {
    // A wall browser without storage keeps the choice until reload.
  }
  apply();
}
