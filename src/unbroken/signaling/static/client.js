// unbroken signaling: the browser client, served by the signaling server at /client.js.
//
// The same protocol as the Python client (docs/signaling.md): join a room, send and
// receive, reconnect with backoff and resume without losing or repeating a message;
// and PerfectNegotiator, the webrtc-pc perfect negotiation pattern, so that
// pc.restartIce() on either side (or both at once) renegotiates by itself.
//
//   <script src="/client.js"></script>
//   const { SignalingClient, PerfectNegotiator } = UnbrokenSignaling;
//   const client = new SignalingClient("ws://host:8765/ws", "room");
//   await client.connect();
//   const pc = new RTCPeerConnection();
//   new PerfectNegotiator(pc, client);       // polite: the peer whose id sorts higher
//   pc.createDataChannel("chat");            // negotiationneeded: the offer goes out
(function (global) {
  "use strict";

  // Join refusals that retrying cannot fix.
  const FATAL = new Set([
    "room-full", "unknown-room", "server-full", "token-required", "bad-token",
    "token-expired", "peer-in-use", "bad-message",
  ]);

  class SignalingError extends Error {
    constructor(code, message) {
      super(`${code}: ${message}`);
      this.name = "SignalingError";
      this.code = code;
    }
  }

  // Events (CustomEvent, the message in `detail`): connected ({resumed}), disconnected,
  // reset, closed, peer-joined, peer-left, description, candidate, end-of-candidates,
  // message, servererror, lost (a count).
  class SignalingClient extends EventTarget {
    constructor(url, room, options = {}) {
      super();
      this.url = url;
      this.room = room;
      this.peerId = options.peer ?? null;
      this.token = options.token ?? null;
      this.create = options.create ?? true;
      this.reconnect = options.reconnect ?? true;
      this.backoffInitial = options.backoffInitial ?? 50; // ms
      this.backoffMax = options.backoffMax ?? 5000; // ms
      this.ackEvery = options.ackEvery ?? 16;
      this.outboxLimit = options.outboxLimit ?? 1024;
      this.peers = [];
      this.resumeToken = null;
      this.state = "new";
      this.lost = 0;
      this.droppedOutgoing = 0;
      this.connects = 0;
      this._outbox = []; // [seq, message] until the server acknowledges
      this._nextSeq = 1;
      this._written = 0;
      this._lastIn = 0;
      this._acked = 0;
      this._ws = null;
      this._joined = false;
      this._closing = false;
      this._delay = this.backoffInitial;
      this._first = null;
    }

    connect() {
      if (this._first) return this._first.promise;
      let resolve, reject;
      const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
      this._first = { promise, resolve, reject, settled: false };
      this._open();
      return promise;
    }

    send(type, fields = {}, to = null) {
      if (this.state === "closed") throw new Error("the signaling client is closed");
      const msg = { type, ...fields };
      if (to) msg.to = to;
      const seq = this._nextSeq++;
      this._outbox.push([seq, msg]);
      if (this._outbox.length > this.outboxLimit) {
        this._outbox.shift();
        this.droppedOutgoing++;
      }
      this._flush();
      return seq;
    }

    sendDescription(description, to = null) {
      return this.send("description", { description: { type: description.type, sdp: description.sdp } }, to);
    }

    sendCandidate(candidate, to = null) {
      const c = candidate.toJSON ? candidate.toJSON() : candidate;
      const init = {
        candidate: c.candidate, sdpMid: c.sdpMid ?? null,
        sdpMLineIndex: c.sdpMLineIndex ?? null, usernameFragment: c.usernameFragment ?? null,
      };
      return this.send("candidate", { candidate: init }, to);
    }

    sendEndOfCandidates(usernameFragment, to = null) {
      return this.send("end-of-candidates", { usernameFragment: usernameFragment ?? null }, to);
    }

    sendMessage(data, to = null) {
      return this.send("message", { data }, to);
    }

    close(leave = true) {
      this._closing = true;
      if (this._ws) {
        if (leave && this._joined && this._ws.readyState === WebSocket.OPEN) {
          this._ws.send(JSON.stringify({ type: "leave" }));
        }
        this._ws.close();
      }
      this._setState("closed");
    }

    // Close the socket without leaving, as a network failure would (tests, demos).
    drop() {
      if (this._ws) this._ws.close();
    }

    _emit(name, detail) {
      this.dispatchEvent(new CustomEvent(name, { detail }));
    }

    _setState(state) {
      this.state = state;
    }

    _joinMessage() {
      const msg = { type: "join", room: this.room };
      if (this.resumeToken) {
        msg.resume = this.resumeToken;
        msg.lastSeq = this._lastIn;
      } else {
        if (this.peerId) msg.peer = this.peerId;
        if (this.token) msg.token = this.token;
        if (!this.create) msg.create = false;
      }
      return msg;
    }

    _open() {
      if (this._closing) return;
      this._setState(this.connects ? "reconnecting" : "connecting");
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (err) {
        this._fail(err);
        return;
      }
      this._ws = ws;
      ws.onopen = () => ws.send(JSON.stringify(this._joinMessage()));
      ws.onmessage = (event) => {
        let msg;
        try { msg = JSON.parse(event.data); } catch (err) { return; }
        this._onFrame(ws, msg);
      };
      ws.onclose = () => {
        if (this._ws !== ws) return;
        this._ws = null;
        if (this._joined) {
          this._joined = false;
          this._emit("disconnected");
        }
        if (this._closing || !this.reconnect) {
          if (!this._closing) this._fail(new Error("the signaling connection closed"));
          return;
        }
        this._setState("reconnecting");
        // Exponential backoff with full jitter.
        const wait = this._delay * (0.5 + Math.random() / 2);
        this._delay = Math.min(this.backoffMax, this._delay * 2);
        setTimeout(() => this._open(), wait);
      };
    }

    _fail(err) {
      if (this._first && !this._first.settled) {
        this._first.settled = true;
        this._first.reject(err);
      }
      this._closing = true;
      this._setState("closed");
      this._emit("closed", String(err));
    }

    _onFrame(ws, msg) {
      if (!this._joined) {
        if (msg.type === "error") {
          if (msg.code === "unknown-session" && this.resumeToken) {
            this._reset();
            ws.send(JSON.stringify(this._joinMessage()));
          } else if (FATAL.has(msg.code)) {
            this._closing = true;
            ws.close();
            this._fail(new SignalingError(msg.code, msg.message));
          } else {
            this._emit("servererror", msg);
          }
          return;
        }
        if (msg.type === "joined") this._onJoined(msg);
        return;
      }
      if (msg.type === "ack") { this._trim(msg.seq); return; }
      if (msg.type === "error") { this._emit("servererror", msg); return; }
      if (msg.type === "left") return;
      if (Number.isInteger(msg.seq)) {
        if (msg.seq <= this._lastIn) return; // delivered before a drop: handled already
        if (msg.seq > this._lastIn + 1) {
          const gap = msg.seq - this._lastIn - 1;
          this.lost += gap;
          this._emit("lost", gap);
        }
        this._lastIn = msg.seq;
      }
      if (msg.type === "peer-joined" && !this.peers.includes(msg.peer)) this.peers.push(msg.peer);
      if (msg.type === "peer-left") this.peers = this.peers.filter((p) => p !== msg.peer);
      if (this._lastIn - this._acked >= this.ackEvery) {
        this._acked = this._lastIn;
        ws.send(JSON.stringify({ type: "ack", seq: this._lastIn }));
      }
      this._emit(msg.type, msg);
    }

    _reset() {
      this.droppedOutgoing += this._outbox.length;
      this._outbox = [];
      this.resumeToken = null;
      this._lastIn = this._acked = 0;
      this._nextSeq = 1;
      this._written = 0;
      this._emit("reset");
    }

    _onJoined(msg) {
      this.peerId = msg.peer;
      this.resumeToken = msg.resume;
      this.peers = msg.peers.slice();
      if (msg.lost) {
        // Dropped from the mailbox while we were away: delivery goes on after them.
        this.lost += msg.lost;
        this._lastIn += msg.lost;
        this._emit("lost", msg.lost);
      }
      this._trim(msg.received || 0);
      this._written = msg.received || 0;
      this._joined = true;
      this._delay = this.backoffInitial;
      this.connects++;
      this._setState("open");
      if (this._first && !this._first.settled) {
        this._first.settled = true;
        this._first.resolve();
      }
      this._emit("connected", { resumed: !!msg.resumed });
      this._flush();
    }

    _trim(acked) {
      while (this._outbox.length && this._outbox[0][0] <= acked) this._outbox.shift();
    }

    _flush() {
      const ws = this._ws;
      if (!ws || !this._joined || ws.readyState !== WebSocket.OPEN) return;
      for (const [seq, msg] of this._outbox) {
        if (seq <= this._written) continue;
        const out = { ...msg, seq };
        if (this._lastIn) {
          out.ack = this._lastIn;
          this._acked = this._lastIn;
        }
        ws.send(JSON.stringify(out));
        this._written = seq;
      }
    }
  }

  function ufragOf(description) {
    const found = description && /^a=ice-ufrag:(\S+)/m.exec(description.sdp);
    return found ? found[1] : null;
  }

  // The webrtc-pc perfect negotiation example, wired to a SignalingClient. Incoming
  // messages are applied one at a time, in arrival order. Polite: `options.polite`, or
  // the peer whose id sorts higher (both sides agree). Offers wait for the other peer.
  class PerfectNegotiator {
    constructor(pc, client, options = {}) {
      this.pc = pc;
      this.client = client;
      this.remote = options.peer ?? null;
      this._polite = options.polite ?? null;
      this.makingOffer = false;
      this.ignoreOffer = false;
      this.isSettingRemoteAnswerPending = false;
      this.offers = 0;
      this.answers = 0;
      this.collisions = 0;
      this.errors = 0;
      this._deferred = false;
      this._chain = Promise.resolve();
      this._listeners = [];
      this._listen(pc, "negotiationneeded", () => this._onNegotiationNeeded());
      this._listen(pc, "icecandidate", (e) => this._onIceCandidate(e.candidate));
      for (const type of ["description", "candidate", "end-of-candidates"]) {
        this._listen(client, type, (e) => this._enqueue(e.detail));
      }
      this._listen(client, "peer-joined", (e) => this._onPeerJoined(e.detail));
    }

    get polite() {
      if (this._polite !== null) return this._polite;
      const remote = this._remotePeer();
      return !!(remote && this.client.peerId && this.client.peerId > remote);
    }

    close() {
      for (const [target, type, fn] of this._listeners) target.removeEventListener(type, fn);
      this._listeners = [];
    }

    _listen(target, type, fn) {
      target.addEventListener(type, fn);
      this._listeners.push([target, type, fn]);
    }

    _remotePeer() {
      if (!this.remote && this.client.peers.length) this.remote = this.client.peers[0];
      return this.remote;
    }

    async _onNegotiationNeeded() {
      if (!this._remotePeer()) {
        this._deferred = true;
        return;
      }
      this._deferred = false;
      try {
        this.makingOffer = true;
        await this.pc.setLocalDescription();
        this.offers++;
        this.client.sendDescription(this.pc.localDescription, this.remote);
      } catch (err) {
        this.errors++;
        console.warn("perfect negotiation: making an offer failed", err);
      } finally {
        this.makingOffer = false;
      }
    }

    _onIceCandidate(candidate) {
      if (!this._remotePeer()) return;
      if (candidate && candidate.candidate) {
        this.client.sendCandidate(candidate, this.remote);
      } else if (!candidate) {
        this.client.sendEndOfCandidates(ufragOf(this.pc.localDescription), this.remote);
      }
    }

    _onPeerJoined(msg) {
      if (!this.remote) this.remote = msg.peer;
      if (this._deferred && msg.peer === this.remote) this._onNegotiationNeeded();
    }

    _enqueue(msg) {
      if (this.remote && msg.from && msg.from !== this.remote) return;
      if (!this.remote) this.remote = msg.from;
      this._chain = this._chain.then(() => this._handle(msg)).catch((err) => {
        this.errors++;
        console.warn("perfect negotiation:", msg.type, err);
      });
    }

    async _handle(msg) {
      const pc = this.pc;
      if (msg.type === "description") {
        const description = msg.description;
        const readyForOffer = !this.makingOffer &&
          (pc.signalingState === "stable" || this.isSettingRemoteAnswerPending);
        const offerCollision = description.type === "offer" && !readyForOffer;
        if (offerCollision) this.collisions++;
        this.ignoreOffer = !this.polite && offerCollision;
        if (this.ignoreOffer) return;
        this.isSettingRemoteAnswerPending = description.type === "answer";
        try {
          await pc.setRemoteDescription(description); // rolls back our offer if needed
        } finally {
          this.isSettingRemoteAnswerPending = false;
        }
        if (description.type === "offer") {
          await pc.setLocalDescription();
          this.answers++;
          this.client.sendDescription(pc.localDescription, this.remote);
        }
        return;
      }
      const init = msg.type === "candidate"
        ? msg.candidate
        : { candidate: "", usernameFragment: msg.usernameFragment ?? null };
      try {
        await pc.addIceCandidate(init);
      } catch (err) {
        if (!this.ignoreOffer) throw err;
      }
    }
  }

  global.UnbrokenSignaling = { SignalingClient, SignalingError, PerfectNegotiator };
})(globalThis);
