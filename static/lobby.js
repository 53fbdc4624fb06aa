// Lobby: go to /chat/<room>/ for a valid room name (1-100 word characters).
"use strict";
(function () {
  const input = document.getElementById("room-name-input");
  const error = document.getElementById("room-name-error");
  document.getElementById("room-name-form").addEventListener("submit", function (event) {
    event.preventDefault();
    const room = input.value.trim();
    if (!/^[\p{L}\p{M}\p{N}\p{Pc}]{1,100}$/u.test(room)) {
      error.hidden = false;
      return;
    }
    window.location.pathname = "/chat/" + encodeURIComponent(room) + "/";
  });
})();
