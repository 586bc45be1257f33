// The storefront's browser code: a custom "wishlist" event sent to the aigc_django ingest
// API, and the "your data" page (export and erase through /aigc/api/me/).
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function sendJson(url, method, body) {
  const response = await fetch(url, {
    method: method,
    credentials: "same-origin",
    headers: {
      "Accept": "application/json",
      "Content-Type": "application/json",
      "X-CSRFToken": csrfToken(),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch (error) {
    data = null;
  }
  return { ok: response.ok, status: response.status, data: data };
}

// --- Product pages: "Save to wishlist" -----------------------------------------------------
// The wishlist itself lives in this browser (localStorage); the shop learns of the save
// through one event of the custom kind "wishlist", declared in AIGC["CUSTOM_EVENT_KINDS"].
const WISHLIST_KEY = "storefront.wishlist";

function wishlist() {
  try {
    return JSON.parse(localStorage.getItem(WISHLIST_KEY) || "[]");
  } catch (error) {
    return [];
  }
}

function setUpWishlist(button) {
  const status = document.querySelector("[data-wishlist-status]");
  const item = button.dataset.item;
  const saved = () => {
    button.textContent = "♥ On your wishlist";
    button.disabled = true;
  };
  if (wishlist().includes(item)) {
    saved();
  }
  button.addEventListener("click", async () => {
    button.disabled = true;
    const result = await sendJson(button.dataset.eventsUrl, "POST", {
      events: [{ kind: "wishlist", item: item, category: button.dataset.category }],
    });
    if (!result.ok) {
      button.disabled = false;
      status.textContent = (result.data && result.data.error) || `Could not save (HTTP ${result.status}).`;
      return;
    }
    localStorage.setItem(WISHLIST_KEY, JSON.stringify([...wishlist(), item]));
    saved();
    const accepted = result.data ? result.data.accepted : 0;
    status.textContent = accepted
      ? `Recorded ${accepted} "wishlist" event through /aigc/api/events/.`
      : "Saved in this browser; not recorded (this browser is not tracked).";
  });
}

// --- "Your data" page ----------------------------------------------------------------------
function setUpMyData(box) {
  const url = box.dataset.url;
  const status = document.querySelector("[data-my-data-status]");
  const output = document.querySelector("[data-my-data-output]");

  box.querySelector('[data-action="show"]').addEventListener("click", async () => {
    const result = await sendJson(url, "GET");
    if (result.ok) {
      status.textContent = `${result.data.events.length} events stored for this browser.`;
      output.textContent = JSON.stringify(result.data, null, 2);
      output.hidden = false;
    } else {
      status.textContent = (result.data && result.data.error) || `HTTP ${result.status}`;
      output.hidden = true;
    }
  });

  box.querySelector('[data-action="erase"]').addEventListener("click", async () => {
    if (!window.confirm("Erase everything this shop stored about this browser?")) {
      return;
    }
    const result = await sendJson(url, "DELETE");
    if (result.ok) {
      const erased = result.data.erased;
      status.textContent = `Erased ${erased.events} events and ${erased.visitors} visitor record(s). ` +
        "Your next visit starts a new, empty profile.";
      output.hidden = true;
      localStorage.removeItem(WISHLIST_KEY);
    } else {
      status.textContent = (result.data && result.data.error) || `HTTP ${result.status}`;
    }
  });
}

document.querySelectorAll("[data-wishlist]").forEach(setUpWishlist);
document.querySelectorAll("[data-my-data]").forEach(setUpMyData);
