// The room page's message log: what a message looks like (author told apart by
// colour, own messages marked, full time on hover, day separators, runs of one
// author grouped), and where the view is: it sticks to the newest message, also
// when the layout changes size, unless the reader scrolled up; then it stays
// put and a "new messages" button says how many arrived below.
// User text only ever reaches the page through textContent, never as HTML.
"use strict";
window.ChatLog = (function () {
  const NAME_COLOURS = 12;          // .name-0 .. .name-11 in chat.css, each >= 4.5:1 on the log
  const GROUP_MS = 5 * 60 * 1000;   // one author's messages within 5 min read as one run
  const NEAR_BOTTOM_PX = 32;

  function create(log, marker, hint) {
    let stuck = true;               // follow the newest message
    let unseen = 0;                 // live messages that arrived below while scrolled up
    let previous = null;            // {user, ts} of the last message line, for grouping
    let lastDay = null;

    function nearBottom() {
      return log.scrollHeight - log.scrollTop - log.clientHeight <= NEAR_BOTTOM_PX;
    }
    function scrollToNewest() {
      log.scrollTop = log.scrollHeight;
      stuck = true;
      unseen = 0;
      marker.hidden = true;
    }
    function showMarker() {
      marker.textContent = (unseen === 1 ? "1 new message" : unseen + " new messages") + " below ↓";
      marker.hidden = false;
    }
    log.addEventListener("scroll", function () {
      stuck = nearBottom();
      if (stuck) { unseen = 0; marker.hidden = true; }
    });
    marker.addEventListener("click", function () { scrollToNewest(); log.focus(); });
    // The log changes size when the window does, the phone keyboard opens, the
    // composer grows: keep the newest message in view through all of them.
    if (window.ResizeObserver) new ResizeObserver(function () { if (stuck) scrollToNewest(); }).observe(log);
    window.addEventListener("resize", function () { if (stuck) scrollToNewest(); });

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
    function daySeparator(ts) {
      const when = new Date(ts);
      const day = when.toDateString();
      if (day === lastDay) return;
      lastDay = day;
      previous = null;
      const item = document.createElement("li");
      item.className = "day";
      item.append(span("day-label", dayLabel(when)));
      insert(item);
    }
    function insert(item) {       // before the pending lines, which stay last
      log.insertBefore(item, log.querySelector("li.pending"));
    }

    // A message frame as a line: author, time, text. ``own``: sent by this
    // page's user; ``fresh``: new to the reader (counts for the marker).
    function addMessage(frame, own, fresh) {
      daySeparator(frame.ts);
      const item = document.createElement("li");
      item.className = "message" + (own ? " own" : "");
      item.dataset.id = frame.id;
      const grouped = previous !== null && previous.user === frame.user && frame.ts - previous.ts < GROUP_MS;
      if (grouped) item.classList.add("cont");
      previous = { user: frame.user, ts: frame.ts };
      item.append(span("author " + nameClass(frame.user), frame.user), timeElement(frame.ts),
                  span("text", frame.message));
      insert(item);
      hint.hidden = true;
      added(fresh && !own, own && !frame.replay);  // what the reader just sent: show it
      return item;
    }
    function addPending(user, text) {
      const item = document.createElement("li");
      item.className = "pending own";
      item.append(span("author " + nameClass(user), user), span("time", "sending…"), span("text", text));
      log.appendChild(item);
      hint.hidden = true;
      scrollToNewest();           // the sender wants to see what they sent
      return item;
    }
    function addNotice(text, kind) {   // kind "info": news, not a problem (not shown as one)
      const shown = log.querySelectorAll("li:not(.pending)");
      const last = shown[shown.length - 1];
      if (last && last.classList.contains("notice") && last.textContent === text) return false;  // no repeats
      const item = document.createElement("li");
      item.className = kind ? "notice " + kind : "notice";
      item.textContent = text;
      insert(item);
      previous = null;
      added(false, true);         // a notice is about what the reader just did: show it
      return true;
    }
    function showHintIfEmpty() {
      hint.hidden = log.querySelector("li.message, li.pending") !== null;
    }
    return { addMessage: addMessage, addPending: addPending, addNotice: addNotice,
             showHintIfEmpty: showHintIfEmpty, scrollToNewest: scrollToNewest, nameClass: nameClass };
  }
  return { create: create };
})();
