// Room page: history then live messages, reconnect with backoff (a live
// countdown and "retry now"), resume with ?since=<last id>, safe resends of
// unacknowledged messages by client_id, and the composer (Enter sends,
// Shift+Enter is a new line, a counter near the limit, a refused text put back).
// User text only ever reaches the page through textContent, never as HTML.
"use strict";
(function () {
  const room = JSON.parse(document.getElementById("room-name").textContent);
  const input = document.getElementById("chat-message-input");
  const form = document.getElementById("chat-form");
  const counter = document.getElementById("char-counter");
  const statusEl = document.getElementById("connection-status");
  const retryButton = document.getElementById("retry-now");
  const members = document.getElementById("member-list");
  const memberCount = document.getElementById("member-count");
  const membersToggle = document.getElementById("members-toggle");
  const typingEl = document.getElementById("typing-status");
  const nameEl = document.getElementById("user-name");
  const announcer = document.getElementById("announcer");
  const logEl = document.getElementById("chat-log");
  const view = window.ChatLog.create(logEl, document.getElementById("new-messages"),
                                     document.getElementById("empty-hint"), function () { return userName; });
  const olderPages = window.ChatHistory.create(logEl, view, sendFrame, function (user) { return user === userName; });
  const edits = window.ChatEdits.create(logEl, input, document.getElementById("edit-bar"), sendFrame, composerChanged);
  const attention = window.ChatAttention.create(room, view, document.getElementById("notify-button"));
  function maxChars() { return Number(input.dataset.maxChars) || 4096; }  // the server's, as served

  let socket = null;
  let ready = false;
  let resumed = false;
  let lastId = null;          // newest message id shown; the resume point
  let attempt = 0;            // reconnect attempts since the last ready
  const outbox = new Map();   // client_id -> {text, item, sentAt}: not yet acknowledged
  const acked = new Map();    // message id -> pending item: acknowledged, not shown yet
  const typers = new Map();   // user -> timer that clears their typing notice
  let lastTypingSent = 0;
  let userName = nameEl.textContent;
  let retryTimer = null;
  let countdown = null;
  const tokens = window.ChatToken || null;   // token mode (static/room-token.js), else null
  let denied = false;         // token mode: not allowed in this room; no more retries
  let tokenTrouble = false;   // token mode: the site gave no token; said once until it does

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
  function codePoints(text) { return Array.from(text).length; }   // as the server counts

  // ---- announcements: live messages and notices, never the replay ----------
  function announce(text) {
    const line = document.createElement("p");
    line.textContent = text;
    announcer.appendChild(line);
    while (announcer.childElementCount > 5) announcer.firstElementChild.remove();
  }

  // ---- connection status ------------------------------------------------------
  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
    retryButton.hidden = state !== "closed";
  }
  // The server is up but cannot store messages (its Redis is unreachable):
  // one state that says so, instead of "reconnecting" for ever and a
  // "Not sent" beside every queued message. Typed messages wait for it.
  const CANNOT_STORE = "the chat cannot store messages right now";
  let cannotStore = false;
  function storeDown() {
    cannotStore = true;
    if (!countdown) setStatus("unavailable", CANNOT_STORE + " · your messages wait here");
  }
  function storeUp() {
    if (!cannotStore) return;
    cannotStore = false;
    if (ready) setStatus("open", "connected");
  }
  function startCountdown(delay) {
    const retryAt = Date.now() + delay;
    function tick() {
      const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      setStatus("closed", (cannotStore ? CANNOT_STORE : "disconnected") + " · retrying in " + seconds + " s");
    }
    tick();
    countdown = setInterval(tick, 250);
  }
  function stopCountdown() {
    clearInterval(countdown);
    countdown = null;
  }

  // ---- the log ---------------------------------------------------------------
  function showNotice(text) {
    if (view.addNotice(text)) announce(text);
  }
  // A resume the server cannot vouch for: messages sent while this page was
  // away were lost (a server restarted without its history, or trimmed past).
  // Said once per page, as information: nothing the reader can or must do.
  let gapShown = false;
  function showGap() {
    if (gapShown) return;
    gapShown = true;
    const text = "Some messages sent while you were disconnected may be missing: the chat server no longer has them.";
    if (view.addNotice(text, "info")) announce(text);
  }
  function showMessage(frame) {
    if (!newer(frame.id, lastId)) return;   // already shown: a replay overlap
    lastId = frame.id;
    const own = frame.user === userName;
    const live = !frame.replay;
    // After a reconnect the replay is what was missed: new to the reader (for
    // the marker), though not read aloud one by one.
    const item = view.addMessage(frame, own, live || resumed);
    olderPages.seen(frame.id);
    attention.arrived(item, frame, own, live || resumed);
    if (live && !own) announce(frame.user + ": " + frame.message);
    if (live && typers.has(frame.user)) stopTyping(frame.user);  // they sent it
    dropShown();
  }
  function nameChanged(name) {
    const before = userName;
    userName = name;
    nameEl.textContent = name;
    nameEl.parentElement.hidden = false;   // hidden until known in token mode
    if (tokens) return;   // token mode: the name is the host site's, told by ready
    showNotice("You are now " + name + ", not " + before + ": the server no longer recognises your " +
               "name (it was restarted with a new secret, or your name cookie expired). " +
               "Choose your name again in the lobby.");
  }

  // ---- sending, acks, resends -------------------------------------------------
  function sendFrame(body) {
    if (socket && ready && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(body));
      return true;
    }
    return false;
  }
  function sendChat(text) {
    const clientId = newClientId();
    const entry = { text: text, item: view.addPending(userName, text), sentAt: 0 };
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
  function refused(clientId) {       // refused for good: the text goes back to the composer
    const entry = outbox.get(clientId);
    if (!entry) return;
    entry.item.remove();
    outbox.delete(clientId);
    input.value = input.value ? entry.text + "\n" + input.value : entry.text;
    composerChanged();
    input.focus();
    view.showHintIfEmpty();
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

  // ---- members and typing ---------------------------------------------------
  function memberItem(user) {
    const item = document.createElement("li");
    item.textContent = user;
    item.dir = "auto";
    item.className = view.nameClass(user) + (user === userName ? " me" : "");
    return item;
  }
  function countMembers() { memberCount.textContent = String(members.childElementCount); }
  function showMembers(list) {
    members.replaceChildren.apply(members, list.map(function (member) { return memberItem(member.user); }));
    countMembers();
  }
  function addMember(user) {
    const known = Array.from(members.children).some(function (li) { return li.textContent === user; });
    if (!known) members.appendChild(memberItem(user));
    countMembers();
  }
  function removeMember(user) {
    Array.from(members.children).forEach(function (li) { if (li.textContent === user) li.remove(); });
    countMembers();
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
  membersToggle.addEventListener("click", function () {
    const open = document.body.classList.toggle("members-open");
    membersToggle.setAttribute("aria-expanded", String(open));
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && document.body.classList.contains("members-open")) membersToggle.click();
  });
  document.getElementById("members-close").addEventListener("click", function () {
    membersToggle.click();
    membersToggle.focus();
  });

  // ---- frames from the server -------------------------------------------------
  const handlers = {
    message: showMessage,
    ready: function (frame) {
      ready = true;
      attempt = 0;
      if (frame.last_id && newer(frame.last_id, lastId)) lastId = frame.last_id;
      cannotStore = false;
      setStatus("open", "connected");
      if (frame.user && frame.user !== userName) nameChanged(frame.user);
      if (!frame.complete && resumed) showGap();
      dropShown();
      view.showHintIfEmpty();
      resendOutbox(0);
      tokenTrouble = false;
      if (tokens) tokens.opened(function (token) { sendFrame({ type: "refresh", token: token }); });
      olderPages.ready(frame, resumed);
    },
    refreshed: function () {},
    older: function (frame) { olderPages.answer(frame); },
    edited: function (frame) { storeUp(); view.editMessage(frame); edits.edited(frame.id); },
    deleted: function (frame) { storeUp(); view.removeMessage(frame.id); edits.removed(frame.id); },
    ack: function (frame) { storeUp(); accepted(frame.client_id, frame.id); },
    error: function (frame) {
      if (frame.error === "unavailable" && (!frame.client_id || outbox.has(frame.client_id))) {
        storeDown();   // said by the status; the message stays in the outbox and is retried
        // An edit is not queued: it goes back into the composer, said once.
        if (!frame.client_id && edits.refused(frame)) showNotice("Not saved: " + frame.detail);
        return;
      }
      // Unavailable or rate limited: the message stays in the outbox and is retried.
      const retried = frame.client_id && outbox.has(frame.client_id) &&
        (frame.error === "unavailable" || frame.error === "rate_limited");
      if (frame.client_id && !retried) refused(frame.client_id);
      const edit = edits.refused(frame);
      showNotice((retried ? "Not sent yet, retrying: " : edit ? "Not saved: " : "Not sent: ") + frame.detail);
    },
    presence: function (frame) { showMembers(frame.members); },
    join: function (frame) { addMember(frame.user); },
    leave: function (frame) { removeMember(frame.user); },
    typing: function (frame) { showTyping(frame.user); },
  };

  function connect() {
    retryTimer = null;
    stopCountdown();
    ready = false;
    setStatus("connecting", cannotStore ? CANNOT_STORE + " · retrying…" : attempt ? "reconnecting…" : "connecting…");
    if (!tokens) return openSocket(null);
    tokens.token().then(openSocket, function (error) {
      if (!tokenTrouble) showNotice("Could not renew your sign-in (" + error.message + "); trying again.");
      tokenTrouble = true;
      retryLater();
    });
  }
  function openSocket(token) {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    let url = scheme + "//" + window.location.host + "/ws/chat/" + encodeURIComponent(room) + "/";
    resumed = lastId !== null;
    if (resumed) url += "?since=" + encodeURIComponent(lastId);
    socket = new WebSocket(url);
    if (token) socket.onopen = function () { socket.send(JSON.stringify({ type: "auth", token: token })); };
    socket.onmessage = function (event) {
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      const handle = handlers[frame.type];
      if (handle) handle(frame);
    };
    socket.onclose = function (event) {
      ready = false;
      socket = null;
      if (tokens && tokenClosed(tokens.closed(event.code))) return;
      retryLater();
    };
  }
  function tokenClosed(why) {   // token mode: true when the page must not reconnect
    if (why === "denied") {
      denied = true;
      setStatus("denied", "not allowed in this room");
      showNotice("You are not allowed in this room.");
      input.disabled = true;
      document.getElementById("chat-message-submit").disabled = true;
      return true;
    }
    if (why === "expired" && !tokens.renews) showNotice("Your sign-in has ended: sign in again on the site.");
    return false;
  }
  function retryLater() {
    const delay = Math.min(10000, 500 * Math.pow(2, attempt)) * (0.5 + Math.random() / 2);
    attempt += 1;
    startCountdown(delay);
    retryTimer = setTimeout(connect, delay);
  }
  function connectNow() {     // the network is back, or the reader asked: skip the rest of the backoff
    if (retryTimer === null || denied) return;
    clearTimeout(retryTimer);
    connect();
  }
  window.addEventListener("online", connectNow);
  retryButton.addEventListener("click", connectNow);

  // Messages refused as unavailable or rate limited stay in the outbox, and so
  // would one whose ack was lost: resend what has waited 3 s (the server
  // recognises the client_id and does not publish it twice).
  setInterval(function () { if (ready && outbox.size) resendOutbox(3000); }, 1000);

  // ---- the composer -----------------------------------------------------------
  function composerChanged() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2, 160) + "px";
    const used = codePoints(input.value);
    const limit = maxChars();
    const left = limit - used;
    const near = left <= Math.max(20, Math.floor(limit / 10));
    counter.textContent = !near ? "" : left >= 0 ? left + " characters left"
      : -left + " characters over the limit of " + limit;
    counter.classList.toggle("over", left < 0);
    input.setAttribute("aria-invalid", String(left < 0));
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    if (codePoints(text) <= maxChars() && edits.submit(text)) return;
    if (codePoints(text) > maxChars()) {   // kept, not cut: the writer decides what goes
      composerChanged();
      announce("Not sent: " + counter.textContent);
      input.focus();
      return;
    }
    sendChat(text);
    input.value = "";
    composerChanged();
    input.focus();
  });
  input.addEventListener("keydown", function (event) {
    // Enter sends; Shift+Enter is a new line; Enter that ends an IME composition does neither.
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    form.requestSubmit();
  });
  input.addEventListener("input", function () {
    composerChanged();
    const now = Date.now();
    if (now - lastTypingSent > 1000 && sendFrame({ typing: true })) lastTypingSent = now;
  });

  connect();
})();
