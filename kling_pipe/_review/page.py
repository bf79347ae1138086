"""The live review page: its frame, its script and its styles, all served by kling-pipe.

The shots' cards are `kling_pipe._outputs.contact_sheet.shot_card`'s, the very markup of the
static ``index.html``, made live (`CardContext.live`: buttons instead of commands). The page
loads nothing from anywhere else: its script and styles are served beside it (``/app.js``,
``/app.css``) so that the Content-Security-Policy can forbid every inline script and every
other origin.

The script keeps one `EventSource` on ``/events`` (it reconnects by itself): each ``card``
event replaces one shot's card, each ``totals`` event the header. Every request that changes
anything carries the session's token in a header (``X-Review-Token``), which another site's
page cannot set.
"""

from __future__ import annotations

import html
from typing import Final

from kling_pipe._outputs.contact_sheet import CSS as SHEET_CSS


def page(*, title: str, name: str, totals: str, cards: str, token: str) -> str:
    """Return the page's HTML: the cards as the records show them now, the script to follow."""
    return _PAGE.format(
        title=html.escape(title, quote=True),
        name=html.escape(name, quote=True),
        totals=totals,
        cards=cards,
        token=html.escape(token, quote=True),
    )


CSS: Final = (
    SHEET_CSS
    + """
.live { margin: .25rem 0 0; color: var(--muted); font-size: .9rem; }
.live.on::before { content: "● "; color: var(--ok); }
.actions { display: flex; gap: .5rem; flex-wrap: wrap; }
button { font: inherit; padding: .25em .8em; border-radius: 6px; cursor: pointer;
  border: 1px solid var(--line); background: var(--bg); color: var(--ink); }
button:disabled { opacity: .45; cursor: default; }
button[data-act="approve"] { border-color: var(--ok); }
.refusal { margin: 0; color: var(--bad); overflow-wrap: anywhere; }
.shot.focus { outline: 3px solid var(--wait); outline-offset: 2px; }
.notice { position: fixed; bottom: 1rem; right: 1rem; max-width: 32rem; z-index: 2;
  background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .75rem;
  box-shadow: 0 4px 16px rgb(0 0 0 / .2); white-space: pre-wrap; overflow-wrap: anywhere;
  cursor: pointer; }
dialog { max-width: 34rem; border: 1px solid var(--line); border-radius: 10px;
  background: var(--card); color: var(--ink); }
dialog p { white-space: pre-wrap; }
.keys { color: var(--muted); font-size: .85rem; }
"""
)

JS: Final = r"""
"use strict";
const token = document.querySelector('meta[name="review-token"]').content;
const main = document.querySelector("main");
const live = document.getElementById("live");
const notice = document.getElementById("notice");
let focused = null;

function shots() { return [...main.querySelectorAll("article.shot")]; }

function setFocus(card) {
  if (!card) return;
  if (focused) focused.classList.remove("focus");
  focused = card;
  card.classList.add("focus");
  if (card.getBoundingClientRect().top < 0 || card.getBoundingClientRect().top > innerHeight) {
    card.scrollIntoView({ block: "start", behavior: "smooth" });
  }
}

function say(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

function refuse(shot, text) {
  const card = document.getElementById("shot-" + shot);
  const where = card && card.querySelector(".refusal");
  if (where) { where.textContent = text; where.hidden = false; } else { say(text); }
}

async function post(path, body) {
  const answer = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Review-Token": token },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = {};
  try { data = await answer.json(); } catch (e) { data = { error: "HTTP " + answer.status }; }
  return { ok: answer.ok && data.ok, data };
}

async function act(action, shot, take) {
  const body = take ? { shot, take: Number(take) } : { shot };
  if (action === "pick") {
    const preview = await post("/api/pick-preview", body);
    if (!preview.ok) { refuse(shot, preview.data.error); return; }
    const ask = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = preview.data.message;
    ask.returnValue = "";
    ask.showModal();
    const answer = await new Promise((resolve) =>
      ask.addEventListener("close", () => resolve(ask.returnValue), { once: true }));
    if (answer !== "yes") return;
  }
  const done = await post("/api/" + action, body);
  if (!done.ok) { refuse(shot, done.data.error); return; }
  say(done.data.message);
}

main.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-act]");
  if (!button || button.disabled) return;
  setFocus(button.closest("article.shot"));
  act(button.dataset.act, button.dataset.shot, button.dataset.take);
});

function playing(card) {
  const videos = [...card.querySelectorAll("video")];
  return videos.find((v) => !v.paused) || videos.find((v) => v.closest(".picked")) || videos[0];
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (document.querySelector("dialog[open]")) return;
  // Space on a player or a button is theirs (play, press): never done twice.
  if (event.key === " " && event.target.closest("video, button, summary")) return;
  const list = shots();
  const at = focused ? list.indexOf(focused) : -1;
  const key = event.key;
  if (key === "j" || key === "ArrowDown" || key === "ArrowRight") {
    setFocus(list[Math.min(at + 1, list.length - 1)]);
  } else if (key === "k" || key === "ArrowUp" || key === "ArrowLeft") {
    setFocus(list[Math.max(at - 1, 0)]);
  } else if (focused && /^[1-8]$/.test(key)) {
    const button = focused.querySelector(`button[data-act="pick"][data-take="${key}"]`);
    if (button && !button.disabled) act("pick", button.dataset.shot, key);
  } else if (focused && key === "a") {
    const button = focused.querySelector('button[data-act="approve"]');
    if (button) act("approve", button.dataset.shot);
  } else if (focused && key === " ") {
    const video = playing(focused);
    if (video) { if (video.paused) video.play(); else video.pause(); }
  } else {
    return;
  }
  event.preventDefault();
});

function follow() {
  const events = new EventSource("/events");
  events.addEventListener("open", () => { live.classList.add("on"); live.textContent = "live"; });
  events.addEventListener("error", () => {
    live.classList.remove("on");
    live.textContent = "reconnecting…";
  });
  events.addEventListener("card", (event) => {
    const data = JSON.parse(event.data);
    const old = document.getElementById("shot-" + data.id);
    const box = document.createElement("div");
    box.innerHTML = data.html;
    const card = box.firstElementChild;
    if (old) {
      // A video being watched is never swapped under the viewer: the same file keeps its
      // element, and so its place in the playback.
      for (const video of card.querySelectorAll("video")) {
        const same = [...old.querySelectorAll("video")].find(
          (v) => v.getAttribute("src") === video.getAttribute("src"));
        if (same) video.replaceWith(same);
      }
      const wasFocused = old === focused;
      old.replaceWith(card);
      if (wasFocused) setFocus(card);
    } else {
      main.append(card);
    }
  });
  events.addEventListener("totals", (event) => {
    document.getElementById("totals").innerHTML = JSON.parse(event.data).html;
  });
}

notice.addEventListener("click", () => say(""));
// The token stays out of the address bar and the history; the session's cookie reloads.
history.replaceState(null, "", "/");
setFocus(shots()[0]);
follow();
"""

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="review-token" content="{token}">
<title>{title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
<h1>{name}</h1>
<p class="totals" id="totals">{totals}</p>
<p class="live" id="live">connecting…</p>
<p class="keys">j/k or arrows: next/previous shot · 1-8: pick a take · a: approve · \
space: play/pause</p>
</header>
<main>
{cards}
</main>
<dialog id="confirm"><form method="dialog">
<p id="confirm-text"></p>
<button value="yes" autofocus>Pick it</button> <button value="no">Cancel</button>
</form></dialog>
<div class="notice" id="notice" role="status" hidden></div>
<footer>Served by kling-pipe on this machine only. Stop it with Ctrl-C in its terminal.</footer>
</body>
</html>
"""
