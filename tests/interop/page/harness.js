// unbroken interop harness page.
//
// Theory of operation: the page opens a WebSocket back to the server that served it
// (tests/interop/browser.py) and runs the commands it receives there, one JSON object
// each: {id, cmd, args}. Every command answers {type: "reply", id, ok, result | error}.
// Everything that happens in the page on its own (ICE candidates, state changes,
// negotiationneeded, data channel messages, tracks, console output, uncaught errors) is
// reported as {type: "event", event, t, ...} with t in epoch milliseconds, in the order
// it happened. The page holds any number of RTCPeerConnections, named by small integers.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const session = params.get("session") || "";
  const now = () => performance.timeOrigin + performance.now();
  const logEl = document.getElementById("log");

  let ws = null;
  const backlog = [];

  function send(msg) {
    const text = JSON.stringify(msg);
    if (ws !== null && ws.readyState === WebSocket.OPEN) ws.send(text);
    else backlog.push(text);
  }

  function emit(event, fields) {
    send(Object.assign({ type: "event", event, t: now() }, fields));
  }

  function fmt(value) {
    if (typeof value === "string") return value;
    if (value instanceof Error) return `${value.name}: ${value.message}`;
    try {
      return JSON.stringify(value);
    } catch (_e) {
      return String(value);
    }
  }

  // Console output and uncaught errors go to the test, which shows them on failure.
  for (const level of ["log", "info", "warn", "error", "debug"]) {
    const original = console[level].bind(console);
    console[level] = (...args) => {
      original(...args);
      emit("console", { level, text: args.map(fmt).join(" ") });
    };
  }
  window.addEventListener("error", (e) => {
    emit("pageerror", {
      message: e.message,
      stack: (e.error && e.error.stack) || `${e.filename}:${e.lineno}:${e.colno}`,
    });
  });
  window.addEventListener("unhandledrejection", (e) => {
    const reason = e.reason;
    emit("pageerror", {
      message: reason instanceof Error ? `${reason.name}: ${reason.message}` : fmt(reason),
      stack: (reason && reason.stack) || "",
    });
  });

  function errorInfo(err) {
    if (err instanceof Error || (err && typeof err === "object" && "message" in err)) {
      return { name: err.name || "Error", message: err.message, stack: err.stack || "" };
    }
    return { name: "Error", message: fmt(err), stack: "" };
  }

  function description(d) {
    return d ? { type: d.type, sdp: d.sdp } : null;
  }

  function toBase64(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text);
  }

  function fromBase64(text) {
    const raw = atob(text);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  // Media sources that need no devices: an oscillator and a repainted canvas.
  const sources = [];
  function syntheticTrack(kind) {
    if (kind === "audio") {
      const ctx = new AudioContext();
      const osc = ctx.createOscillator();
      const dst = ctx.createMediaStreamDestination();
      osc.connect(dst);
      osc.start();
      ctx.resume();
      sources.push(ctx);
      return dst.stream.getAudioTracks()[0];
    }
    if (kind === "video") {
      const canvas = document.createElement("canvas");
      canvas.width = 320;
      canvas.height = 240;
      const g = canvas.getContext("2d");
      let frame = 0;
      const paint = () => {
        g.fillStyle = `hsl(${(frame * 7) % 360}, 80%, 50%)`;
        g.fillRect(0, 0, canvas.width, canvas.height);
        g.fillStyle = "#fff";
        g.fillText(String(frame++), 10, 20);
      };
      paint();
      sources.push(setInterval(paint, 33));
      return canvas.captureStream(30).getVideoTracks()[0];
    }
    throw new TypeError(`unknown track kind ${kind}`);
  }

  const STATE_EVENTS = [
    ["iceconnectionstatechange", "iceConnectionState"],
    ["connectionstatechange", "connectionState"],
    ["signalingstatechange", "signalingState"],
    ["icegatheringstatechange", "iceGatheringState"],
  ];

  class Peer {
    constructor(id, config) {
      this.id = id;
      this.pc = new RTCPeerConnection(config);
      this.channels = new Map();
      this.transceivers = [];
      const pc = this.pc;
      pc.addEventListener("icecandidate", (e) => {
        emit("icecandidate", { pc: id, candidate: e.candidate ? e.candidate.toJSON() : null });
      });
      pc.addEventListener("icecandidateerror", (e) => {
        emit("icecandidateerror", {
          pc: id,
          address: e.address,
          port: e.port,
          url: e.url,
          errorCode: e.errorCode,
          errorText: e.errorText,
        });
      });
      for (const [name, property] of STATE_EVENTS) {
        pc.addEventListener(name, () => {
          emit("statechange", { pc: id, property, state: pc[property] });
        });
      }
      pc.addEventListener("negotiationneeded", () => emit("negotiationneeded", { pc: id }));
      pc.addEventListener("datachannel", (e) => this.adopt(e.channel, "remote"));
      pc.addEventListener("track", (e) => {
        emit("track", {
          pc: id,
          kind: e.track.kind,
          trackId: e.track.id,
          mid: e.transceiver ? e.transceiver.mid : null,
          streams: e.streams.map((s) => s.id),
        });
      });
    }

    adopt(ch, origin) {
      const id = this.id;
      const label = ch.label;
      ch.binaryType = "arraybuffer";
      this.channels.set(label, ch);
      emit("datachannel", { pc: id, label, channelId: ch.id, origin, state: ch.readyState });
      const state = () => emit("channelstate", { pc: id, label, state: ch.readyState });
      ch.addEventListener("open", state);
      ch.addEventListener("closing", state);
      ch.addEventListener("close", state);
      ch.addEventListener("error", (e) => {
        emit("channelerror", { pc: id, label, message: e.error ? e.error.message : "error" });
      });
      ch.addEventListener("message", (e) => {
        if (typeof e.data === "string") emit("message", { pc: id, label, data: e.data, binary: false });
        else emit("message", { pc: id, label, data: toBase64(e.data), binary: true });
      });
    }

    channel(label) {
      const ch = this.channels.get(label);
      if (!ch) throw new Error(`pc ${this.id} has no data channel labelled ${JSON.stringify(label)}`);
      return ch;
    }
  }

  function ufragOf(d) {
    const m = d && /^a=ice-ufrag:(\S+)\r?$/m.exec(d.sdp);
    return m ? m[1] : null;
  }

  // What a restart test needs to know about the selected pair, from getStats (transport,
  // candidate-pair, local-candidate, remote-candidate) and the current descriptions.
  async function selectedInfo(pc) {
    const stats = new Map();
    (await pc.getStats()).forEach((s) => stats.set(s.id, s));
    const info = {
      currentLocalUfrag: ufragOf(pc.currentLocalDescription),
      currentRemoteUfrag: ufragOf(pc.currentRemoteDescription),
      localUfrag: null,
      remoteUfrag: null,
      local: null,
      remote: null,
      role: null,
    };
    for (const s of stats.values()) {
      if (s.type !== "transport") continue;
      info.role = s.iceRole || null;
      const pair = s.selectedCandidatePairId ? stats.get(s.selectedCandidatePairId) : null;
      if (!pair) continue;
      const local = stats.get(pair.localCandidateId);
      const remote = stats.get(pair.remoteCandidateId);
      if (local) {
        info.localUfrag = local.usernameFragment || null;
        info.local = `${local.candidateType} ${local.address}:${local.port}`;
      }
      if (remote) {
        info.remoteUfrag = remote.usernameFragment || null;
        info.remote = `${remote.candidateType} ${remote.address}:${remote.port}`;
      }
    }
    return info;
  }

  // Reports "selected" whenever selectedInfo changes. Firefox has no
  // selectedcandidatepairchange event, so this polls getStats every `interval` ms; where
  // the event exists (Chromium) it also checks at once when it fires.
  function watchSelected(p, interval) {
    if (p.watch) clearInterval(p.watch.timer);
    const watch = { last: "", busy: false, again: false };
    p.watch = watch;
    const check = async () => {
      if (watch.busy) {
        watch.again = true;
        return;
      }
      watch.busy = true;
      try {
        do {
          watch.again = false;
          if (p.pc.signalingState === "closed") return;
          const info = await selectedInfo(p.pc);
          const key = JSON.stringify(info);
          if (key !== watch.last) {
            watch.last = key;
            emit("selected", { pc: p.id, info });
          }
        } while (watch.again);
      } finally {
        watch.busy = false;
      }
    };
    watch.timer = setInterval(check, interval);
    const ice = p.pc.sctp && p.pc.sctp.transport && p.pc.sctp.transport.iceTransport;
    if (ice && "onselectedcandidatepairchange" in ice) {
      ice.addEventListener("selectedcandidatepairchange", check);
    }
    p.pc.addEventListener("signalingstatechange", check);
    check();
  }

  const peers = new Map();
  let nextPeer = 1;

  function peer(id) {
    const p = peers.get(id);
    if (!p) throw new Error(`no RTCPeerConnection with id ${id}`);
    return p;
  }

  const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;

  // Each command takes one object of named arguments and returns something JSON can carry.
  const commands = {
    async createPc({ config }) {
      const id = nextPeer++;
      peers.set(id, new Peer(id, config || {}));
      return id;
    },
    async closePc({ pc }) {
      const p = peer(pc);
      if (p.watch) clearInterval(p.watch.timer);
      p.pc.close();
      return null;
    },
    async createDataChannel({ pc, label, options }) {
      const p = peer(pc);
      const ch = p.pc.createDataChannel(label, options || {});
      p.adopt(ch, "local");
      return { channelId: ch.id, state: ch.readyState };
    },
    async createOffer({ pc, options }) {
      return description(await peer(pc).pc.createOffer(options || {}));
    },
    async createAnswer({ pc }) {
      return description(await peer(pc).pc.createAnswer());
    },
    async setLocalDescription({ pc, description: d }) {
      const p = peer(pc).pc;
      if (d) await p.setLocalDescription(d);
      else await p.setLocalDescription();
      return description(p.localDescription);
    },
    async setRemoteDescription({ pc, description: d }) {
      await peer(pc).pc.setRemoteDescription(d);
      return null;
    },
    async addIceCandidate({ pc, candidate }) {
      const p = peer(pc).pc;
      if (candidate === null || candidate === undefined) await p.addIceCandidate();
      else await p.addIceCandidate(candidate);
      return null;
    },
    async restartIce({ pc }) {
      peer(pc).pc.restartIce();
      return null;
    },
    async descriptions({ pc }) {
      const p = peer(pc).pc;
      return {
        localDescription: description(p.localDescription),
        currentLocalDescription: description(p.currentLocalDescription),
        pendingLocalDescription: description(p.pendingLocalDescription),
        remoteDescription: description(p.remoteDescription),
        currentRemoteDescription: description(p.currentRemoteDescription),
        pendingRemoteDescription: description(p.pendingRemoteDescription),
      };
    },
    async states({ pc }) {
      const p = peer(pc).pc;
      const out = {};
      for (const [, property] of STATE_EVENTS) out[property] = p[property];
      return out;
    },
    async send({ pc, label, data, binary }) {
      peer(pc).channel(label).send(binary ? fromBase64(data) : data);
      return null;
    },
    async channelState({ pc, label }) {
      const ch = peer(pc).channel(label);
      return { state: ch.readyState, bufferedAmount: ch.bufferedAmount, channelId: ch.id };
    },
    async closeChannel({ pc, label }) {
      peer(pc).channel(label).close();
      return null;
    },
    async getStats({ pc }) {
      const report = await peer(pc).pc.getStats();
      const out = [];
      report.forEach((s) => out.push(Object.assign({}, s)));
      return out;
    },
    async addTransceiver({ pc, kind, init }) {
      const t = peer(pc).pc.addTransceiver(kind, init || {});
      return { mid: t.mid, direction: t.direction };
    },
    async addTrack({ pc, kind }) {
      const track = syntheticTrack(kind);
      const stream = new MediaStream([track]);
      peer(pc).pc.addTrack(track, stream);
      return { trackId: track.id, streamId: stream.id };
    },
    async addUserMedia({ pc, audio, video }) {
      // The browser's fake capture devices (Chromium --use-fake-device-for-media-stream,
      // Firefox media.navigator.streams.fake), no prompt.
      const stream = await navigator.mediaDevices.getUserMedia({ audio: !!audio, video: !!video });
      const out = [];
      for (const track of stream.getTracks()) {
        peer(pc).pc.addTrack(track, stream);
        out.push({ kind: track.kind, trackId: track.id, label: track.label });
      }
      return out;
    },
    async selected({ pc }) {
      return await selectedInfo(peer(pc).pc);
    },
    async watchSelected({ pc, interval }) {
      watchSelected(peer(pc), interval || 10);
      return null;
    },
    async evaluate({ source, arg }) {
      const fn = new AsyncFunction("arg", "h", source);
      const result = await fn(arg, { peers, peer, emit });
      return result === undefined ? null : result;
    },
    async navigate({ url }) {
      // Reply first; the new page connects with a new session id.
      setTimeout(() => location.replace(url), 0);
      return null;
    },
  };

  async function run(msg) {
    const handler = commands[msg.cmd];
    try {
      if (!handler) throw new Error(`unknown command ${msg.cmd}`);
      const result = await handler(msg.args || {});
      send({ type: "reply", id: msg.id, ok: true, result });
    } catch (err) {
      send({ type: "reply", id: msg.id, ok: false, error: errorInfo(err) });
    }
  }

  ws = new WebSocket(`ws://${location.host}/ws?session=${encodeURIComponent(session)}`);
  ws.addEventListener("open", () => {
    ws.send(JSON.stringify({ type: "hello", session, userAgent: navigator.userAgent, t: now() }));
    for (const text of backlog.splice(0)) ws.send(text);
  });
  ws.addEventListener("message", (e) => run(JSON.parse(e.data)));
  ws.addEventListener("close", () => {
    logEl.textContent += "control socket closed\n";
    for (const p of peers.values()) p.pc.close();
  });
  logEl.textContent = `session ${session}\n`;
})();
