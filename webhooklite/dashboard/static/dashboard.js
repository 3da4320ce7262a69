// webhooklite dashboard: keeps the page current without a reload, and shows times as "5m ago".
//
// Every few seconds it fetches this same page (the cookie goes with it: same origin) and, when the
// server's HTML of <main id="live"> changed, puts the new <main> in place of the old one. The HTML
// is the server's, escaped there (dashboard/markup.py); DOMParser builds it inert (no script runs in
// a parsed document, and the Content-Security-Policy allows no inline script anyway). Data put in
// the page by this script goes through textContent only. A refresh waits while you type in a form
// or select text in the page, and while the tab is hidden.
"use strict";

(function () {
  const period = Math.max(1, Number(document.body.dataset.refresh) || 3) * 1000;
  const status = document.getElementById("status");
  let last = null;
  let stopped = false;

  function say(kind, text) {
    status.className = "status " + kind;
    status.textContent = text;
  }

  function ago(seconds) {
    const s = Math.max(0, seconds);
    if (s < 2) return "just now";
    if (s < 120) return Math.round(s) + "s ago";
    if (s < 7200) return Math.round(s / 60) + "m ago";
    if (s < 2 * 86400) return Math.round(s / 3600) + "h ago";
    return Math.round(s / 86400) + "d ago";
  }

  function showTimes(root) {
    const now = Date.now() / 1000;
    for (const t of root.querySelectorAll("time[data-t]")) {
      const at = Number(t.dataset.t);
      if (!Number.isFinite(at)) continue;
      const text = at > now + 1 ? "in " + ago(at - now).replace(" ago", "") : ago(now - at);
      if (t.textContent !== text) t.textContent = text;
    }
  }

  function busy(live) {
    const active = document.activeElement;
    if (active && live.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) return true;
    const sel = window.getSelection();
    return Boolean(sel && !sel.isCollapsed && live.contains(sel.anchorNode));
  }

  async function refresh() {
    const live = document.getElementById("live");
    if (stopped || document.hidden || !live) return;
    if (busy(live)) {
      showTimes(live);
      return;
    }
    let response;
    try {
      response = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
    } catch (e) {
      say("offline", "the dashboard does not answer: retrying");
      return;
    }
    if (response.status === 401) {
      say("offline", "refused: the dashboard was restarted; open the URL it printed");
      stopped = true;
      return;
    }
    if (!response.ok) {
      say("offline", "HTTP " + response.status + ": retrying");
      return;
    }
    const text = await response.text();
    if (text !== last) {
      const fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
      if (fresh && !busy(live)) {
        last = text;
        const node = document.adoptNode(fresh);
        showTimes(node);
        live.replaceWith(node);
      }
    }
    showTimes(document.getElementById("live"));
    say("live", "live \u00b7 updated " + new Date().toLocaleTimeString());
  }

  showTimes(document.getElementById("live"));
  say("live", "live");
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
  });
  setInterval(refresh, period);
})();
