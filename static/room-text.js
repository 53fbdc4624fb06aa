// A message's text as DOM nodes: http(s) URLs become links that open in a new
// tab without handing it this page (rel noopener noreferrer nofollow), and
// "@name" of the reader is marked. Nothing else becomes markup: every piece of
// user text goes in through text nodes and setAttribute, never as HTML, so
// "javascript:" and "data:" URLs (which the pattern does not match) stay text.
"use strict";
window.ChatText = (function () {
  const URL_PATTERN = /\bhttps?:\/\/[^\s]+/gi;
  const TRAILING = /[.,;:!?'"\u2019\u201d]+$/;   // sentence punctuation after a URL is not part of it

  // Where a URL found by the pattern really ends: without trailing punctuation,
  // and without a closing bracket it did not open ("(see https://x.org/a)").
  function trimUrl(url) {
    for (;;) {
      const before = url;
      url = url.replace(TRAILING, "");
      const last = url[url.length - 1];
      const pairs = { ")": "(", "]": "[", "}": "{" };
      if (pairs[last] && url.split(pairs[last]).length <= url.split(last).length - 1) url = url.slice(0, -1);
      if (url === before) return url;
    }
  }
  function isWebUrl(text) {
    try {
      const protocol = new URL(text).protocol;
      return protocol === "http:" || protocol === "https:";
    } catch (e) {
      return false;
    }
  }
  function link(url) {
    const a = document.createElement("a");
    a.setAttribute("href", url);
    a.setAttribute("target", "_blank");
    a.setAttribute("rel", "noopener noreferrer nofollow");
    a.textContent = url;
    return a;
  }
  // Text with "@<me>" marked, appended to ``parent`` as text nodes and <mark>s.
  function appendMentions(parent, text, me) {
    if (!me) { parent.append(text); return false; }
    const needle = "@" + me.toLowerCase();
    const lower = text.toLowerCase();
    let from = 0, found = false;
    for (let at = lower.indexOf(needle); at !== -1; at = lower.indexOf(needle, at + needle.length)) {
      const after = text.charAt(at + needle.length);
      if (after && /[\p{L}\p{N}_]/u.test(after)) continue;   // "@ann" is not "@anna"
      parent.append(text.slice(from, at));
      const mark = document.createElement("mark");
      mark.className = "mention";
      mark.textContent = text.slice(at, at + needle.length);
      parent.append(mark);
      from = at + needle.length;
      found = true;
    }
    parent.append(text.slice(from));
    return found;
  }
  // Fill ``parent`` with ``text``; true when it mentions ``me``.
  function render(parent, text, me) {
    parent.replaceChildren();
    let from = 0, mentioned = false;
    for (const match of text.matchAll(URL_PATTERN)) {
      const url = trimUrl(match[0]);
      if (!isWebUrl(url)) continue;
      mentioned = appendMentions(parent, text.slice(from, match.index), me) || mentioned;
      parent.append(link(url));
      from = match.index + url.length;
    }
    mentioned = appendMentions(parent, text.slice(from), me) || mentioned;
    return mentioned;
  }
  function mentions(text, me) {
    return appendMentions(document.createDocumentFragment(), text, me);
  }
  return { render: render, mentions: mentions };
})();
