// Older history for the room page: when the reader scrolls to the top, ask the
// server for the page before the oldest message shown ({"type": "older"}) and
// put it in above without moving what the reader sees (room-log.js), down to
// "This is the beginning of the room". One request at a time; a request lost
// with the connection is asked again after the reconnect.
"use strict";
window.ChatHistory = (function () {
  const PAGE = 50;

  // ``send(body)`` sends a frame (false when not connected); ``isOwn(user)``.
  function create(log, view, send, isOwn) {
    let oldest = null;        // id of the oldest message shown (or deleted since): the next page is before it
    let asked = null;         // the ``before`` of the request in flight
    let complete = false;     // nothing older is retained

    function older(a, b) {
      const x = a.split("-").map(Number), y = b.split("-").map(Number);
      return x[0] < y[0] || (x[0] === y[0] && x[1] < y[1]);
    }
    function showHead() {
      view.setHead(asked !== null ? "loading" : complete && oldest !== null ? "complete" : "");
    }
    function maybeLoad() {
      if (asked !== null || complete || oldest === null || !view.atTop()) return;
      if (!send({ type: "older", before: oldest, limit: PAGE })) return;
      asked = oldest;
      showHead();
    }
    log.addEventListener("scroll", maybeLoad);

    return {
      seen: function (id) {
        if (oldest === null || older(id, oldest)) oldest = id;
      },
      ready: function (frame, resumed) {
        asked = null;          // an answer lost with the old connection: ask again
        if (!resumed && frame.complete) complete = true;   // the replay was the whole room
        showHead();
        maybeLoad();
      },
      answer: function (frame) {
        if (frame.before !== asked) return;
        asked = null;
        const page = frame.messages.filter(function (m) { return oldest === null || older(m.id, oldest); });
        view.addOlder(page, isOwn);
        if (page.length) oldest = page[0].id;
        complete = frame.complete;
        showHead();
        maybeLoad();
      },
    };
  }
  return { create: create };
})();
