// Telling a reader who is elsewhere that the room spoke: while the tab is
// hidden, the title counts new messages ("(3) room · Chat") and a "New
// messages" line marks where the reader left; back on the tab the count goes.
// A message that mentions the reader ("@name") raises a desktop notification
// while the tab is hidden, once the reader allowed them: the permission is
// asked only when the reader clicks "Notify me of mentions".
"use strict";
window.ChatAttention = (function () {
  function create(room, view, button) {
    const title = document.title;
    let unread = 0;

    function hidden() { return document.visibilityState === "hidden"; }
    function canNotify() { return "Notification" in window; }
    function showButton() {
      button.hidden = !canNotify() || Notification.permission !== "default";
    }
    document.addEventListener("visibilitychange", function () {
      if (hidden()) return;
      unread = 0;
      document.title = title;
    });
    button.addEventListener("click", function () {
      if (!canNotify()) return;
      Promise.resolve(Notification.requestPermission()).then(showButton, showButton);
    });
    showButton();

    // A message just shown; ``live``: not a replay of what the reader saw before.
    function arrived(item, frame, own, live) {
      if (!live || own || !hidden()) return;
      unread += 1;
      if (unread === 1) view.markUnread(item);
      document.title = "(" + unread + ") " + title;
      if (item.mentioned && canNotify() && Notification.permission === "granted") {
        try {
          const note = new Notification(frame.user + " mentioned you in #" + room, { body: frame.message, tag: frame.id });
          note.onclick = function () { window.focus(); note.close(); };
        } catch (e) {
          // Some browsers allow notifications only from a service worker: the title still counts.
        }
      }
    }
    return { arrived: arrived };
  }
  return { create: create };
})();
