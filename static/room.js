// Room page: history then live messages, reconnect with backoff, resume with
// ?since=<last id>, and safe resends of unacknowledged messages by client_id.
// User text only ever reaches the page through textContent, never as HTML.
"use strict";
(function () {
  const room = JSON.parse(document.getElementById("room-name").textContent);
  const log = document.getElementById("chat-log");
  const input = document.getElementById("chat-message-input");
  const statusEl = document.getElementById("connection-status");
  const members = document.getElementById("member-list");
  const typingEl = document.getElementById("typing-status");

  let socket = null;
  let ready = false;
  let lastId = null;          // newest message id shown; the resume point
  let attempt = 0;            // reconnect attempts since the last ready
  const outbox = new Map();   // client_id -> {text, item, sentAt}: not yet acknowledged
  const acked = new Map();    // message id -> pending item: acknowledged, not shown yet
  const typers = new Map();   // user -> timer that clears their typing notice
  let lastTypingSent = 0;
  let userName = document.getElementById("user-name").textContent;
  let retryTimer = null;

  function idKey(id) {
    const [ms, seq] = id.split("-");
    return [Number(ms), Number(seq)];
  }
  function newer(a, b) {      // is id a after id b?
    if (b === null) return true;
    const x = idKey(a), y = idKey(b);
    return x[0] > y[0] || (x[0] === y[0] && x[1] > y[1]);
  }
  function newClientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  function line(className) {
    const item = document.createElement("li");
    if (className) item.className = className;
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.appendChild(item);
    if (atBottom) log.scrollTop = log.scrollHeight;
    return item;
  }
  function span(className, text) {
    const el = document.createElement("span");
    el.className = className;
    el.textContent = text;
    return el;
  }
  function keepOutboxLast() {
    log.querySelectorAll("li.pending").forEach(function (el) { log.appendChild(el); });
  }
  function showNotice(text) {
    const shown = log.querySelectorAll("li:not(.pending)");
    const last = shown[shown.length - 1];
    if (last && last.classList.contains("notice") && last.textContent === text) return;  // no repeats
    line("notice").textContent = text;
    keepOutboxLast();
  }
  function showMessage(frame) {
    if (!newer(frame.id, lastId)) return;   // already shown: a replay overlap
    lastId = frame.id;
    const item = line("message");
    item.dataset.id = frame.id;
    const time = new Date(frame.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    item.append(span("time", time), span("author", frame.user), span("text", frame.message));
    if (!frame.replay && typers.has(frame.user)) stopTyping(frame.user);  // they sent it
    dropShown();
    keepOutboxLast();
  }

  function sendFrame(body) {
    if (socket && ready && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(body));
      return true;
    }
    return false;
  }
  function sendChat(text) {
    const clientId = newClientId();
    const item = line("pending");
    item.append(span("time", "sending…"), span("author", userName), span("text", text));
    const entry = { text: text, item: item, sentAt: 0 };
    outbox.set(clientId, entry);
    send(clientId, entry);
  }
  function send(clientId, entry) {
    if (sendFrame({ message: entry.text, client_id: clientId })) entry.sentAt = Date.now();
  }
  function resendOutbox(olderThan) {
    const now = Date.now();
    outbox.forEach(function (entry, clientId) {
      if (now - entry.sentAt >= olderThan) send(clientId, entry);
    });
  }
  function settle(clientId) {        // refused for good: forget it
    const entry = outbox.get(clientId);
    if (!entry) return;
    entry.item.remove();
    outbox.delete(clientId);
  }
  function accepted(clientId, id) {  // stored: the pending line goes once the message shows
    const entry = outbox.get(clientId);
    if (!entry) return;
    outbox.delete(clientId);
    acked.set(id, entry.item);
    dropShown();
  }
  function dropShown() {
    acked.forEach(function (item, id) {
      if (lastId !== null && !newer(id, lastId)) {
        item.remove();
        acked.delete(id);
      }
    });
  }

  function showMembers(list) {
    members.replaceChildren();
    list.forEach(function (member) {
      const item = document.createElement("li");
      item.textContent = member.user;
      members.appendChild(item);
    });
  }
  function addMember(user) {
    const known = Array.from(members.children).some(function (li) { return li.textContent === user; });
    if (!known) {
      const item = document.createElement("li");
      item.textContent = user;
      members.appendChild(item);
    }
  }
  function removeMember(user) {
    Array.from(members.children).forEach(function (li) { if (li.textContent === user) li.remove(); });
  }
  function showTyping(user) {
    clearTimeout(typers.get(user));
    typers.set(user, setTimeout(function () { stopTyping(user); }, 3000));
    renderTyping();
  }
  function stopTyping(user) {
    clearTimeout(typers.get(user));
    typers.delete(user);
    renderTyping();
  }
  function renderTyping() {
    const names = Array.from(typers.keys());
    typingEl.textContent = names.length ? names.join(", ") + (names.length > 1 ? " are" : " is") + " typing…" : "";
  }

  const handlers = {
    message: showMessage,
    ready: function (frame) {
      ready = true;
      attempt = 0;
      if (frame.last_id && newer(frame.last_id, lastId)) lastId = frame.last_id;
      setStatus("open", "connected");
      if (frame.user) userName = frame.user;
      if (!frame.complete && resumed) showNotice("Some earlier messages are no longer available.");
      dropShown();
      resendOutbox(0);
    },
    ack: function (frame) { accepted(frame.client_id, frame.id); },
    error: function (frame) {
      // Unavailable or rate limited: the message stays in the outbox and is retried.
      const retried = frame.client_id && outbox.has(frame.client_id) &&
        (frame.error === "unavailable" || frame.error === "rate_limited");
      if (frame.client_id && !retried) settle(frame.client_id);
      showNotice((retried ? "Not sent yet, retrying: " : "Not sent: ") + frame.detail);
    },
    presence: function (frame) { showMembers(frame.members); },
    join: function (frame) { addMember(frame.user); },
    leave: function (frame) { removeMember(frame.user); },
    typing: function (frame) { showTyping(frame.user); },
  };

  let resumed = false;
  function connect() {
    retryTimer = null;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    let url = scheme + "//" + window.location.host + "/ws/chat/" + encodeURIComponent(room) + "/";
    resumed = lastId !== null;
    if (resumed) url += "?since=" + encodeURIComponent(lastId);
    ready = false;
    setStatus("connecting", attempt ? "reconnecting…" : "connecting…");
    socket = new WebSocket(url);
    socket.onmessage = function (event) {
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      const handle = handlers[frame.type];
      if (handle) handle(frame);
    };
    socket.onclose = function () {
      ready = false;
      socket = null;
      const delay = Math.min(10000, 500 * Math.pow(2, attempt)) * (0.5 + Math.random() / 2);
      attempt += 1;
      setStatus("closed", "disconnected, retrying in " + Math.ceil(delay / 1000) + " s");
      retryTimer = setTimeout(connect, delay);
    };
  }
  function connectNow() {     // the network is back: skip the rest of the backoff
    if (retryTimer === null) return;
    clearTimeout(retryTimer);
    connect();
  }
  window.addEventListener("online", connectNow);

  // Messages refused as unavailable or rate limited stay in the outbox, and so
  // would one whose ack was lost: resend what has waited 3 s (the server
  // recognises the client_id and does not publish it twice).
  setInterval(function () { if (ready && outbox.size) resendOutbox(3000); }, 1000);

  document.getElementById("chat-form").addEventListener("submit", function (event) {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    sendChat(text);
    input.value = "";
    input.focus();
  });
  input.addEventListener("input", function () {
    const now = Date.now();
    if (now - lastTypingSent > 1000 && sendFrame({ typing: true })) lastTypingSent = now;
  });

  connect();
})();
