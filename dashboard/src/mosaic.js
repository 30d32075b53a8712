// The camera mosaic: as many tiles as fit, each a camera's picture refreshed from its live
// snapshot about once a second (only the tiles on screen are asked for). Cameras of the
// selected grid (and beneath) come first, then the most recently active, then by id. An
// offline or frozen camera shows as such, never as its last picture; so does one whose
// picture could not be refreshed for a few seconds.
const REFRESH_MS = 1000;
/** A picture older than this is not shown. */
const STALE_MS = 5000;
/** Activity seen this recently puts a camera forward. */
const RECENT_MS = 5 * 60 * 1000;

function shortStatus(s) {
  return String(s ?? '').replace(/^CAMERA_STATUS_/, '') || 'UNKNOWN';
}

export class Mosaic {
  constructor(el, token, cameras, t) {
    this.el = el;
    this.token = token;
    this.t = t;
    this.grids = null;
    /** Camera state by id: status, frozen, activity, when activity was last seen. */
    this.cameras = new Map(cameras.map((c) => [c.id, {
      id: c.id,
      name: c.name,
      grid_ids: c.grid_ids ?? [],
      status: shortStatus(c.status),
      frozen: Boolean(c.frozen),
      activity: c.activity ?? 0,
      activeAt: 0,
    }]));
    /** Tiles on screen by camera id: { box, img, label, shownAt, loading }. */
    this.tiles = new Map();
    this.layoutQueued = false;
    new ResizeObserver(() => this.queueLayout()).observe(el);
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  /** A camera event from the stream. */
  update(e) {
    const c = this.cameras.get(e.camera_id);
    if (!c) return;
    switch (e.kind) {
      case 'ONLINE': c.status = 'ONLINE'; break;
      case 'DEGRADED': c.status = 'DEGRADED'; break;
      case 'OFFLINE': c.status = 'OFFLINE'; break;
      case 'FREEZE': c.frozen = true; break;
      case 'UNFREEZE': c.frozen = false; break;
      case 'ACTIVITY':
        c.activity = e.activity;
        c.activeAt = e.time_ms ?? Date.now();
        break;
      default:
    }
    this.queueLayout();
  }

  /** Lays the tiles out at the next frame: a burst of camera events sorts the cameras once. */
  queueLayout() {
    if (this.layoutQueued) return;
    this.layoutQueued = true;
    requestAnimationFrame(() => {
      this.layoutQueued = false;
      this.layout();
    });
  }

  /** Shows the cameras of these grids first (`null`: no grid selected). */
  setGrids(grids) {
    this.grids = grids;
    this.queueLayout();
  }

  order() {
    const now = Date.now();
    const inGrid = (c) => (this.grids && c.grid_ids.some((g) => this.grids.has(g)) ? 1 : 0);
    const recent = (c) => (now - c.activeAt < RECENT_MS ? c.activeAt : 0);
    return [...this.cameras.values()].sort((a, b) => inGrid(b) - inGrid(a)
      || recent(b) - recent(a)
      || b.activity - a.activity
      || a.id.localeCompare(b.id));
  }

  /** How many tiles fit: columns of at least 14rem, 16:9 pictures with a caption. */
  capacity() {
    const rem = parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
    const w = this.el.clientWidth;
    const h = this.el.clientHeight;
    const cols = Math.max(1, Math.floor(w / (14 * rem)));
    const tileH = (w / cols) * (9 / 16) + 1.6 * rem;
    const rows = Math.max(1, Math.floor(h / tileH));
    return cols * rows;
  }

  layout() {
    const shown = this.order().slice(0, this.capacity());
    const keep = new Set(shown.map((c) => c.id));
    for (const [id, tile] of this.tiles) {
      if (!keep.has(id)) {
        tile.box.remove();
        this.tiles.delete(id);
      }
    }
    for (const c of shown) {
      let tile = this.tiles.get(c.id);
      if (!tile) {
        const box = document.createElement('figure');
        box.className = 'tile';
        box.dataset.camera = c.id;
        const label = document.createElement('div');
        label.className = 'tile-state';
        const caption = document.createElement('figcaption');
        caption.textContent = c.name || c.id;
        box.append(label, caption);
        tile = { box, img: null, label, shownAt: 0, loading: false };
        this.tiles.set(c.id, tile);
      }
      this.el.append(tile.box);
      this.paint(c, tile);
    }
    // A tile new on screen gets its picture now, not at the next tick.
    if ([...this.tiles.values()].some((t) => !t.img && !t.loading)) this.refresh();
  }

  /** Whether a picture of `c` may be shown at all. */
  live(c) {
    return (c.status === 'ONLINE' || c.status === 'DEGRADED') && !c.frozen;
  }

  paint(c, tile) {
    const state = c.frozen ? 'FROZEN' : c.status;
    tile.box.dataset.status = state;
    const fresh = tile.img && Date.now() - tile.shownAt < STALE_MS;
    if (!this.live(c) || !fresh) {
      tile.img?.remove();
      tile.img = null;
      tile.label.textContent = this.live(c) ? this.t('no_picture') : this.t(`camera_${state}`);
      tile.label.hidden = false;
    } else {
      tile.label.hidden = true;
    }
  }

  refresh() {
    for (const [id, tile] of this.tiles) {
      const c = this.cameras.get(id);
      if (!c || !this.live(c) || tile.loading) {
        if (c) this.paint(c, tile);
        continue;
      }
      tile.loading = true;
      const next = new Image();
      next.className = 'tile-picture';
      next.alt = id;
      next.onload = () => {
        tile.loading = false;
        if (!this.live(c) || this.tiles.get(id) !== tile) return;
        if (tile.img) tile.img.replaceWith(next);
        else tile.box.prepend(next);
        tile.img = next;
        tile.shownAt = Date.now();
        this.paint(c, tile);
      };
      next.onerror = () => {
        // Busy or no keyframe (503): the picture before stays until it is too old.
        tile.loading = false;
        this.paint(c, tile);
      };
      next.src = `/snapshot/${encodeURIComponent(id)}.jpg?token=${encodeURIComponent(this.token)}&t=${Date.now()}`;
    }
  }
}
