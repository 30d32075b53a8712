// The live alert stream: a WebSocket to /ws that resumes after the last seq it applied
// when it reconnects, so no change is missed and none is applied twice.
//
// States reported to `onState`: 'connecting', 'live' (the snapshot received, or a resume
// accepted),
// 'lost' (closed; reconnecting with backoff). A close with 4416 (the cursor fell out of
// the change log) starts afresh with a snapshot; `onReset` is called first so the page
// drops what it holds.
export class AlertStream {
  constructor(token, { onMessage, onState, onReset }) {
    this.token = token;
    this.onMessage = onMessage;
    this.onState = onState;
    this.onReset = onReset;
    this.lastSeq = 0;
    this.delay = 500;
    this.socket = null;
  }

  url() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = new URLSearchParams({ token: this.token });
    if (this.lastSeq > 0) q.set('resume_after', String(this.lastSeq));
    return `${proto}//${location.host}/ws?${q}`;
  }

  connect() {
    this.onState(this.lastSeq > 0 ? 'lost' : 'connecting');
    const ws = new WebSocket(this.url());
    this.socket = ws;
    // A resume has no snapshot: the socket being accepted is the sign it is back.
    ws.onopen = () => {
      if (this.lastSeq > 0) this.live();
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg.type === 'change') {
        // A snapshot's seqs are the alerts' own; the cursor comes with snapshot_end.
        if (msg.kind !== 'SNAPSHOT') {
          if (msg.seq <= this.lastSeq) return;
          this.lastSeq = msg.seq;
        }
      } else if (msg.type === 'snapshot_end') {
        this.lastSeq = Math.max(this.lastSeq, msg.cursor);
        this.live();
      }
      this.onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (this.socket !== ws) return;
      if (ev.code === 4416) {
        this.lastSeq = 0;
        this.onReset();
      }
      this.onState('lost');
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    };
  }

  live() {
    this.delay = 500;
    this.onState('live');
  }
}
