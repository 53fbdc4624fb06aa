// The room page's message log: what a message looks like (author told apart by
// colour, own messages marked, full time on hover or tap, day separators, runs
// of one author grouped, links, "(edited)", tall messages folded), older pages
// put in above without moving what the reader sees, and where the view is: it
// sticks to the newest message, also when the layout changes size, unless the
// reader scrolled up; then it stays put and a "new messages" button says how
// many arrived below.
// User text only ever reaches the page through text nodes (room-text.js), never as HTML.
"use strict";
window.ChatLog = (function () {
  const NAME_COLOURS = 12;          // .name-0 .. .name-11 in chat.css, each >= 4.5:1 on the log
  const GROUP_MS = 5 * 60 * 1000;   // one author's messages within 5 min read as one run
  const NEAR_BOTTOM_PX = 32;
  const MAYBE_TALL = 300;           // characters (or lines * 40) from which a message may be taller than the log

  // ``me()``: the reader's name now (for "@name" and own messages).
  function create(log, marker, hint, me) {
    let stuck = true;               // follow the newest message
    let unseen = 0;                 // live messages that arrived below while scrolled up
    const head = document.createElement("li");   // above the oldest message: loading, or the beginning
    head.className = "history-head";
    head.hidden = true;
    log.prepend(head);

    function nearBottom() {
      return log.scrollHeight - log.scrollTop - log.clientHeight <= NEAR_BOTTOM_PX;
    }
    let ownTop = 0;                 // where scrollToNewest last put the log
    function scrollToNewest() {
      log.scrollTop = log.scrollHeight;
      ownTop = log.scrollTop;
      stuck = true;
      unseen = 0;
      marker.hidden = true;
    }
    function showMarker() {
      marker.textContent = (unseen === 1 ? "1 new message" : unseen + " new messages") + " below ↓";
      marker.hidden = false;
    }
    log.addEventListener("scroll", function () {
      // The scroll event of our own scrollToNewest can arrive after the log
      // shrank (the composer grew) and before the ResizeObserver: measured
      // then, it looks scrolled up. Only a move up from there unsticks.
      if (stuck && log.scrollTop >= ownTop) return;
      stuck = nearBottom();
      if (stuck) { unseen = 0; marker.hidden = true; }
    });
    marker.addEventListener("click", function () { scrollToNewest(); log.focus(); });
    // The log changes size when the window does, the phone keyboard opens, the
    // composer grows: keep the newest message in view through all of them.
    if (window.ResizeObserver) new ResizeObserver(function () { if (stuck) scrollToNewest(); }).observe(log);
    window.addEventListener("resize", function () { if (stuck) scrollToNewest(); });
    // On a phone there is no hover: a tap on a grouped message shows its time.
    log.addEventListener("click", function (event) {
      const item = event.target.closest("li.message");
      if (!item || event.target.closest("a, button")) return;
      item.classList.toggle("show-time");
    });

    function added(countsAsNew, force) {
      if (stuck || force) { scrollToNewest(); return; }
      if (countsAsNew) { unseen += 1; showMarker(); }
    }

    function nameClass(user) {
      let hash = 0;
      for (const char of user) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
      return "name-" + (hash % NAME_COLOURS);
    }
    function span(className, text) {
      const el = document.createElement("span");
      el.className = className;
      el.textContent = text;
      return el;
    }
    function timeElement(ts) {
      const when = new Date(ts);
      const el = document.createElement("time");
      el.className = "time";
      el.dateTime = when.toISOString();
      el.title = when.toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
      el.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      return el;
    }
    function dayLabel(when) {
      const today = new Date();
      const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
      if (when.toDateString() === today.toDateString()) return "Today";
      if (when.toDateString() === yesterday.toDateString()) return "Yesterday";
      return when.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long", year: "numeric" });
    }
    function dayItem(day) {
      const item = document.createElement("li");
      item.className = "day";
      item.dataset.day = day;
      item.append(span("day-label", dayLabel(new Date(day))));
      return item;
    }
    function dayOf(ts) { return new Date(ts).toDateString(); }
    function insert(item) {       // before the pending lines, which stay last
      log.insertBefore(item, log.querySelector("li.pending"));
    }
    function lastShown() {        // the last line above the pending ones
      const pending = log.querySelector("li.pending");
      return pending ? pending.previousElementSibling : log.lastElementChild;
    }
    function lastDay() {
      const days = log.querySelectorAll("li.day");
      return days.length ? days[days.length - 1].dataset.day : null;
    }

    // Grouped: right after a message of the same author, less than 5 min apart.
    function regroup(item) {
      if (!item || !item.classList.contains("message")) return;
      const before = item.previousElementSibling;
      const grouped = before !== null && before.classList.contains("message") &&
        before.dataset.user === item.dataset.user && Number(item.dataset.ts) - Number(before.dataset.ts) < GROUP_MS;
      item.classList.toggle("cont", grouped);
    }
    function showText(item, text, editedTs) {
      const body = item.querySelector(".text");
      item.rawText = text;        // what an edit starts from
      const mentioned = window.ChatText.render(body, text, me());
      item.classList.toggle("mentions-me", mentioned && !item.classList.contains("own"));
      if (editedTs) {
        const mark = span("edited", "(edited)");
        mark.title = "edited " + new Date(editedTs).toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
        body.append(" ", mark);
      }
      return mentioned;
    }
    function actions() {
      const box = document.createElement("span");
      box.className = "actions";
      const edit = span("", "Edit");
      const remove = span("", "Delete");
      [edit, remove].forEach(function (label, n) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = n === 0 ? "edit-button" : "delete-button";
        button.append(label);
        box.append(button);
      });
      return box;
    }
    // Fold a message taller than the log, with a "show more" that unfolds it.
    function foldIfTall(item, text) {
      if (text.length < MAYBE_TALL && text.split("\n").length * 40 < MAYBE_TALL) return;
      const body = item.querySelector(".text");
      if (!log.clientHeight || body.scrollHeight <= log.clientHeight) return;
      item.classList.add("folded");
      const more = document.createElement("button");
      more.type = "button";
      more.className = "show-more link-button";
      more.textContent = "Show more";
      more.setAttribute("aria-expanded", "false");
      more.addEventListener("click", function () {
        const folded = item.classList.toggle("folded");
        more.textContent = folded ? "Show more" : "Show less";
        more.setAttribute("aria-expanded", String(!folded));
      });
      item.append(more);
    }
    function messageItem(frame, own) {
      const item = document.createElement("li");
      item.className = "message" + (own ? " own" : "");
      item.dataset.id = frame.id;
      item.dataset.user = frame.user;
      item.dataset.ts = String(frame.ts);
      const author = span("author " + nameClass(frame.user), frame.user);
      const text = span("text", "");
      author.dir = text.dir = "auto";   // right-to-left names and texts lay out right to left
      item.append(author, timeElement(frame.ts), text);
      if (own) item.append(actions());
      item.mentioned = showText(item, frame.message, frame.edited ? frame.edited_ts || frame.ts : 0);
      return item;
    }

    // A message frame as a line: author, time, text. ``own``: sent by this
    // page's user; ``fresh``: new to the reader (counts for the marker).
    function addMessage(frame, own, fresh) {
      const day = dayOf(frame.ts);
      if (day !== lastDay()) insert(dayItem(day));
      const item = messageItem(frame, own);
      insert(item);
      regroup(item);
      foldIfTall(item, frame.message);
      hint.hidden = true;
      added(fresh && !own, own && !frame.replay);  // what the reader just sent: show it
      return item;
    }
    // Older messages (oldest first) go in above the oldest shown; the line the
    // reader sees stays where it is on the screen.
    function addOlder(frames, isOwn) {
      if (!frames.length) return;
      keepPosition(function () {
        const block = document.createDocumentFragment();
        let day = null, previous = null;
        const items = [];
        frames.forEach(function (frame) {
          if (dayOf(frame.ts) !== day) { day = dayOf(frame.ts); block.append(dayItem(day)); }
          const item = messageItem(frame, isOwn(frame.user));
          block.append(item);
          items.push([item, frame.message]);
          previous = item;
        });
        const next = head.nextElementSibling;
        if (next && next.classList.contains("day") && next.dataset.day === day) next.remove();
        head.after(block);
        items.forEach(function (pair) { regroup(pair[0]); foldIfTall(pair[0], pair[1]); });
        regroup(previous.nextElementSibling);
      });
      hint.hidden = true;
    }
    function firstVisible() {
      const top = log.getBoundingClientRect().top;
      for (const item of log.querySelectorAll("li.message")) {
        if (item.getBoundingClientRect().bottom > top) return item;
      }
      return null;
    }
    function keepPosition(change) {
      const anchor = firstVisible();
      const before = anchor ? anchor.getBoundingClientRect().top : 0;
      change();
      if (anchor && anchor.isConnected) log.scrollTop += anchor.getBoundingClientRect().top - before;
    }
    // "loading", "complete" (the beginning of the room) or "" (more to load).
    function setHead(state) {
      if (head.dataset.state === state) return;
      keepPosition(function () {
        head.hidden = !state;
        head.dataset.state = state;
        head.textContent = state === "loading" ? "Loading older messages…"
          : state === "complete" ? "This is the beginning of the room." : "";
      });
      if (stuck) scrollToNewest();
    }
    function find(id) {
      return log.querySelector('li.message[data-id="' + CSS.escape(id) + '"]');
    }
    function editMessage(frame) {
      const item = find(frame.id);
      if (!item) return null;
      keepPosition(function () { showText(item, frame.message, frame.edited_ts || 1); });
      return item;
    }
    function removeMessage(id) {
      const item = find(id);
      if (!item) return;
      keepPosition(function () {
        const next = item.nextElementSibling;
        const before = item.previousElementSibling;
        item.remove();
        // A day left without messages loses its separator.
        if (before && before.classList.contains("day") && (!next || next.classList.contains("day"))) before.remove();
        regroup(next);
      });
      showHintIfEmpty();
    }
    // The "new messages" line, above ``item`` (one at a time).
    function markUnread(item) {
      const line = log.querySelector("li.unread-line");
      if (line) { const after = line.nextElementSibling; line.remove(); regroup(after); }
      const mark = document.createElement("li");
      mark.className = "unread-line";
      mark.append(span("unread-label", "New messages"));
      item.before(mark);
      regroup(item);
    }
    function addPending(user, text) {
      const item = document.createElement("li");
      item.className = "pending own";
      const author = span("author " + nameClass(user), user);
      const body = span("text", text);
      author.dir = body.dir = "auto";
      item.append(author, span("time", "sending…"), body);
      log.appendChild(item);
      hint.hidden = true;
      scrollToNewest();           // the sender wants to see what they sent
      return item;
    }
    function addNotice(text, kind) {   // kind "info": news, not a problem (not shown as one)
      const last = lastShown();
      if (last && last.classList.contains("notice") && last.textContent === text) return false;  // no repeats
      const item = document.createElement("li");
      item.className = kind ? "notice " + kind : "notice";
      item.textContent = text;
      insert(item);
      added(false, true);         // a notice is about what the reader just did: show it
      return true;
    }
    function showHintIfEmpty() {
      hint.hidden = log.querySelector("li.message, li.pending") !== null;
    }
    return { addMessage: addMessage, addPending: addPending, addNotice: addNotice, addOlder: addOlder,
             editMessage: editMessage, removeMessage: removeMessage, setHead: setHead, markUnread: markUnread,
             find: find, showHintIfEmpty: showHintIfEmpty, scrollToNewest: scrollToNewest, nameClass: nameClass,
             atTop: function () { return log.scrollTop <= 200; } };
  }
  return { create: create };
})();
