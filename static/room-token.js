// Token mode (identity from the host site): the room page's tokens. Loaded
// only when the server runs with a token key. A token is fetched from the
// site's refresh URL (with the site's cookies), sent as the socket's first
// frame, and renewed before it expires ({"type": "refresh"}); after a 4001
// the next connection fetches a new one. Without a refresh URL the site's
// cookie carries the token and there is nothing to do here but say when it
// no longer works. room.js calls token(), opened(), closed().
"use strict";
(function () {
  const config = document.getElementById("chat-token");
  if (!config) return;
  const refreshUrl = JSON.parse(config.textContent).refresh_url || "";
  const RETRY_MS = 2000;      // a failed renewal is tried again this soon, until the token ends
  const MIN_LEFT_MS = 5000;   // a held token with less left than this is not used for a new socket
  let held = null;            // {token, exp: ms since epoch}
  let timer = null;
  let sendRefresh = null;     // set while a socket is ready

  function expiryOf(token) {  // read, not verified: the server verifies
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "===".slice((part.length + 3) % 4))).exp * 1000;
    } catch (e) {
      return 0;
    }
  }
  function fetchToken() {
    return fetch(refreshUrl, { credentials: "include", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("the sign-in service answered " + response.status);
        return response.json();
      })
      .then(function (body) {
        if (!body || typeof body.token !== "string") throw new Error("the sign-in service sent no token");
        held = { token: body.token, exp: expiryOf(body.token) };
        return body.token;
      });
  }
  function renewLater(delay) {
    clearTimeout(timer);
    timer = setTimeout(renew, delay);
  }
  function renew() {
    fetchToken().then(function (token) {
      if (!sendRefresh) return;
      sendRefresh(token);
      renewLater(Math.max(1000, (held.exp - Date.now()) * 0.7));
    }, function () {
      if (sendRefresh) renewLater(RETRY_MS);   // the server closes 4001 at exp if this keeps failing
    });
  }

  window.ChatToken = {
    // The token for a new socket's auth frame: the one held while it has time left, else a fresh
    // one; null when the site's cookie carries it. Rejects when the site gives none.
    token: function () {
      if (!refreshUrl) return Promise.resolve(null);
      if (held && held.exp - Date.now() > MIN_LEFT_MS) return Promise.resolve(held.token);
      return fetchToken();
    },
    // The socket is ready: keep its token fresh through send(token) until it closes.
    opened: function (send) {
      if (!refreshUrl || !held) return;
      sendRefresh = send;
      renewLater(Math.max(1000, (held.exp - Date.now()) * 0.7));
    },
    // The socket closed: "denied" (4003: not allowed in this room, do not retry), "expired"
    // (4001: the next connection needs a new token), or "" for any other close.
    closed: function (code) {
      sendRefresh = null;
      clearTimeout(timer);
      if (code === 4003) return "denied";
      if (code === 4001) {
        held = null;
        return "expired";
      }
      return "";
    },
    renews: Boolean(refreshUrl),
  };
})();
