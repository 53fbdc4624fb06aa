// Editing and deleting one's own messages on the room page. Edit (the button,
// or Up in an empty composer, for the last message) puts the text in the
// composer, where Enter saves it as an edit and Escape cancels. Delete asks
// once, in place: the button becomes "Confirm delete" for a few seconds.
// The changes themselves come back from the server ("edited", "deleted")
// like messages, and room-log.js shows them; an edit the server refuses (past
// the edit window) comes back into the composer, as a refused message does.
"use strict";
window.ChatEdits = (function () {
  const CONFIRM_MS = 4000;

  // ``send(body)`` sends a frame; ``composerChanged()`` resizes and recounts the composer.
  function create(log, input, bar, send, composerChanged) {
    let editing = null;       // the message item being edited
    let draft = "";           // what the composer held before
    let sent = null;          // {id, text} of the edit sent and not yet seen back

    function lastOwn() {
      const mine = log.querySelectorAll("li.message.own");
      return mine.length ? mine[mine.length - 1] : null;
    }
    function start(item) {
      if (!editing) draft = input.value;
      editing = item;
      input.value = item.rawText || "";
      bar.hidden = false;
      composerChanged();
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
    }
    function stop() {
      if (!editing) return;
      editing = null;
      bar.hidden = true;
      input.value = draft;
      draft = "";
      composerChanged();
      input.focus();
    }
    // The composer's text is an edit: send it; true when it was (the caller sends nothing).
    function submit(text) {
      if (!editing) return false;
      const item = editing;
      if (text === item.rawText) {
        stop();
      } else if (send({ type: "edit", id: item.dataset.id, message: text })) {
        sent = { id: item.dataset.id, text: text };
        stop();
      }
      return true;
    }
    function confirmDelete(button, item) {
      if (button.dataset.confirming) {
        send({ type: "delete", id: item.dataset.id });
        return;
      }
      button.dataset.confirming = "1";
      button.textContent = "Confirm delete";
      setTimeout(function () {
        delete button.dataset.confirming;
        button.textContent = "Delete";
      }, CONFIRM_MS);
    }
    log.addEventListener("click", function (event) {
      const button = event.target.closest("button");
      const item = button && button.closest("li.message.own");
      if (!item) return;
      if (button.classList.contains("edit-button")) start(item);
      else if (button.classList.contains("delete-button")) confirmDelete(button, item);
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && editing) { event.preventDefault(); stop(); return; }
      if (event.key !== "ArrowUp" || input.value !== "" || editing || event.isComposing) return;
      const item = lastOwn();
      if (!item) return;
      event.preventDefault();
      start(item);
    });
    bar.querySelector("button").addEventListener("click", stop);
    // An error frame that is not about a message (no client_id): true when it refused the edit just sent.
    function refused(frame) {
      if (!sent || frame.client_id) return false;
      const item = log.querySelector('li.message[data-id="' + CSS.escape(sent.id) + '"]');
      const text = sent.text;
      sent = null;
      if (!item || input.value !== "") return false;
      start(item);
      input.value = text;
      composerChanged();
      return true;
    }
    return {
      submit: submit,
      refused: refused,
      edited: function (id) { if (sent && sent.id === id) sent = null; },
      removed: function (id) { if (editing && editing.dataset.id === id) stop(); },
    };
  }
  return { create: create };
})();
