// Lobby: go to /chat/<room>/ for a valid room name: 1 to 100 word characters
// as the server counts them (Python's \w: letters, numbers, underscore; not
// combining marks), after NFC normalisation so that a pasted decomposed "é"
// is the same room as a typed one.
"use strict";
(function () {
  const input = document.getElementById("room-name-input");
  const error = document.getElementById("room-name-error");
  input.addEventListener("input", function () { error.hidden = true; });
  document.getElementById("room-name-form").addEventListener("submit", function (event) {
    event.preventDefault();
    const room = input.value.trim().normalize("NFC");
    if (!/^[\p{L}\p{N}_]{1,100}$/u.test(room)) {
      error.hidden = false;
      return;
    }
    window.location.pathname = "/chat/" + encodeURIComponent(room) + "/";
  });
})();
