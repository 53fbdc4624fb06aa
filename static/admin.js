// The admin page (templates/admin.html): polls the API's JSON routes with the key
// kept in sessionStorage (this tab only, sent as Authorization: Bearer, never in a URL),
// and draws two line charts as inline SVG. Everything that came from a user (room
// names, user names, message text) is set with textContent, never as HTML.
"use strict";

(function () {
  const STORE = "chat-admin-key";
  const POLL_MS = 2000;
  const POINTS = 60; // two minutes at one sample per poll
  const $ = (id) => document.getElementById(id);
  const series = { rate: [], lag: [] };
  let key = sessionStorage.getItem(STORE) || "";
  let room = "";
  let timer = null;

  class Refused extends Error {}

  async function api(path) {
    const response = await fetch(path, { headers: { Authorization: "Bearer " + key }, cache: "no-store" });
    if (response.status === 401) throw new Refused("key refused");
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || "the server answered " + response.status);
    return body;
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function cell(row, text, className) {
    row.appendChild(el("td", text === null || text === undefined ? "–" : text, className));
  }

  function seconds(value) {
    if (value === null || value === undefined) return "–";
    if (value < 60) return value.toFixed(1) + " s";
    return Math.round(value / 60) + " min";
  }

  // ---- the key ----------------------------------------------------------------

  function showKeyForm(message) {
    clearData();
    $("dashboard").hidden = true;
    $("forget").hidden = true;
    $("key-form").hidden = false;
    $("key-error").textContent = message || "";
    $("summary").textContent = "";
    $("key").focus();
  }

  function forget(message) {
    key = "";
    sessionStorage.removeItem(STORE);
    if (timer !== null) clearTimeout(timer);
    timer = null;
    showKeyForm(message);
  }

  function clearData() {
    for (const id of ["processes", "rooms"]) $(id).tBodies[0].replaceChildren();
    $("members").replaceChildren();
    $("messages").replaceChildren();
    $("room-view").hidden = true;
    series.rate.length = 0;
    series.lag.length = 0;
    drawChart("rate-chart", series.rate);
    drawChart("lag-chart", series.lag);
  }

  // ---- polling ----------------------------------------------------------------

  async function poll() {
    timer = null;
    const asked = key;
    try {
      const cluster = await api("/api/cluster");
      if (key !== asked) return; // forgotten (or replaced) meanwhile: show nothing it answered
      $("key-form").hidden = true;
      $("dashboard").hidden = false;
      $("forget").hidden = false;
      showCluster(cluster);
      if (room) await showRoom(room);
    } catch (error) {
      if (key !== asked) return;
      if (error instanceof Refused) {
        forget("That key was refused.");
        return;
      }
      $("summary").textContent = "Cannot reach the server: " + error.message;
    }
    if (key) timer = setTimeout(poll, POLL_MS);
  }

  function showCluster(cluster) {
    const totals = cluster.totals;
    $("summary").textContent = `${totals.ready} of ${cluster.processes.length} ready · ${cluster.bus} bus · ` +
      `${totals.connections} connections · updated ${new Date(cluster.at).toLocaleTimeString()}`;
    const body = $("processes").tBodies[0];
    body.replaceChildren(...cluster.processes.map(processRow));
    const rooms = $("rooms").tBodies[0];
    rooms.replaceChildren(...cluster.rooms.map(roomRow));
    $("no-rooms").hidden = cluster.rooms.length > 0;
    addPoint(series.rate, totals.delivered_per_second);
    addPoint(series.lag, totals.lag_seconds);
    $("rate-now").textContent = totals.delivered_per_second.toFixed(1);
    $("lag-now").textContent = seconds(totals.lag_seconds);
    $("rate-max").textContent = "max " + Math.max(...series.rate).toFixed(1);
    $("lag-max").textContent = "max " + seconds(Math.max(...series.lag));
    drawChart("rate-chart", series.rate);
    drawChart("lag-chart", series.lag);
  }

  function processRow(process) {
    const gone = process.state === "silent" || process.state === "stopped";
    const row = el("tr", null, gone ? "stale" : "");
    if (gone) row.title = "Not running: its numbers are the last it wrote";
    const name = el("td");
    name.appendChild(el("span", process.node, "node"));
    name.firstChild.title = process.incarnation;
    row.appendChild(name);
    const state = el("td");
    const badge = el("span", process.state, "badge " + process.state.replace(" ", "-"));
    if (process.reason) badge.title = process.reason;
    state.appendChild(badge);
    row.appendChild(state);
    cell(row, process.address, "wide mono");
    cell(row, process.rooms, "num wide");
    cell(row, process.connections, "num");
    cell(row, process.delivered_per_second === null ? null : process.delivered_per_second.toFixed(1), "num");
    cell(row, seconds(process.lag.seconds), "num" + (process.lag.seconds > 0 ? " late" : ""));
    cell(row, process.lag.behind, "num wide");
    return row;
  }

  function roomRow(entry) {
    const row = el("tr");
    const name = el("td");
    const button = el("button", entry.room, "link-button");
    button.type = "button";
    button.addEventListener("click", () => selectRoom(entry.room));
    name.appendChild(button);
    row.appendChild(name);
    cell(row, entry.users, "num");
    cell(row, entry.connections, "num wide");
    const age = entry.last_message_age;
    cell(row, age === null ? null : age < 1 ? "just now" : seconds(age) + " ago", "num");
    return row;
  }

  // ---- one room ---------------------------------------------------------------

  async function selectRoom(name) {
    room = name.trim();
    $("room-name").value = room;
    $("room-error").textContent = "";
    try {
      await showRoom(room);
    } catch (error) {
      if (error instanceof Refused) forget("That key was refused.");
    }
  }

  async function showRoom(name) {
    const path = "/api/rooms/" + encodeURIComponent(name);
    let members, history;
    try {
      [members, history] = await Promise.all([api(path + "/members"), api(path + "/messages?limit=20")]);
    } catch (error) {
      if (error instanceof Refused) throw error;
      $("room-error").textContent = error.message;
      $("room-view").hidden = true;
      room = "";
      return;
    }
    if (name !== room) return; // another room was chosen meanwhile
    $("room-view").hidden = false;
    $("member-count").textContent = `(${members.members.length})`;
    $("members").replaceChildren(...members.members.map((member) => {
      const item = el("li", member.user);
      if (member.connections > 1) item.appendChild(el("span", ` ×${member.connections}`, "count"));
      return item;
    }));
    $("messages").replaceChildren(...history.messages.slice().reverse().map((message) => {
      const item = el("li");
      item.appendChild(el("time", new Date(message.ts).toLocaleTimeString(), "when"));
      item.appendChild(el("span", message.user, "who"));
      item.appendChild(el("span", message.message, "what"));
      return item;
    }));
    if (history.messages.length === 0) $("messages").appendChild(el("li", "No message retained.", "hint"));
  }

  // ---- charts -----------------------------------------------------------------

  function addPoint(points, value) {
    points.push(Number(value) || 0);
    if (points.length > POINTS) points.shift();
  }

  // A polyline over a fixed 300x100 box, scaled to the largest value shown; the
  // values drawn are kept in data-values (what a test, or a curious reader, can read).
  function drawChart(id, points) {
    const svg = $(id);
    const ns = "http://www.w3.org/2000/svg";
    const top = Math.max(1e-9, ...points);
    const step = 300 / (POINTS - 1);
    const start = 300 - step * (points.length - 1);
    const coords = points.map((v, i) => `${(start + i * step).toFixed(1)},${(98 - (v / top) * 94).toFixed(1)}`);
    svg.replaceChildren();
    for (const y of [4, 51, 98]) {
      const line = document.createElementNS(ns, "line");
      line.setAttribute("x1", "0"); line.setAttribute("x2", "300");
      line.setAttribute("y1", String(y)); line.setAttribute("y2", String(y));
      line.setAttribute("class", "grid");
      svg.appendChild(line);
    }
    if (points.length > 1) {
      const area = document.createElementNS(ns, "polygon");
      area.setAttribute("points", `${coords[0].split(",")[0]},98 ${coords.join(" ")} 300,98`);
      area.setAttribute("class", "area");
      svg.appendChild(area);
    }
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", coords.join(" "));
    line.setAttribute("class", "line");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.appendChild(line);
    svg.dataset.values = points.join(" ");
  }

  // ---- start ------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      key = $("key").value.trim();
      $("key").value = "";
      if (!key) return;
      sessionStorage.setItem(STORE, key);
      $("key-error").textContent = "";
      poll();
    });
    $("forget").addEventListener("click", () => forget(""));
    $("room-form").addEventListener("submit", (event) => {
      event.preventDefault();
      selectRoom($("room-name").value);
    });
    if (key) poll();
    else showKeyForm("");
  });
})();
