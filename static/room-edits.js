// Editing and deleting one's own messages on the room page. Edit (the button,
// or Up in an empty composer, for the last message) puts the text in the
// composer, where Enter saves it as an edit and Escape cancels. Delete asks
// once, in place: the button becomes "Confirm delete" for a few seconds.
// The changes themselves come back from the server ("edited", "deleted")
// like messages, and room-log.js shows them.
"use strict";
window.ChatEdits = (function () {
  const CONFIRM_MS = 4000;

  // ``send(body)`` sends a frame; ``composerChanged()`` resizes and recounts the composer.
  function create(log, input, bar, send, composerChanged) {
    let editing = null;       // the message item being edited
    let draft = "";           // what the composer held before

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
      if (text !== item.rawText && send({ type: "edit", id: item.dataset.id, message: text })) stop();
      else if (text === item.rawText) stop();
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
    return {
      submit: submit,
      removed: function (id) { if (editing && editing.dataset.id === id) stop(); },
    };
  }
  return { create: create };
})();
