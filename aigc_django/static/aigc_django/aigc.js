/*
 * aigc-django tracking script: no dependencies, no third-party requests.
 *
 * Configuration comes from <script id="aigc-config" type="application/json">, written by
 * {% aigc_tracking_script %}: {"endpoint": slots API prefix, "feedback": feedback API URL,
 * "client_mode": bool}.
 *
 * Client mode: fills the empty slot placeholders from the slots API and reports one
 * impression per variant shown on the page (the server counts nothing in client mode).
 *
 * Clicks: a click on a variant's link (a[data-aigc-variant] whose href is a signed
 * /aigc/r/<token>/ link) is reported by beacon and the browser goes straight to the target.
 * When the beacon cannot be queued, or the click opens a new tab, or the target is on
 * another origin, the script does nothing and the browser follows the signed link, whose
 * redirect counts the click. Each click is counted by exactly one of the two.
 */
(function () {
  "use strict";

  var node = document.getElementById("aigc-config");
  if (!node) {
    return;
  }
  var config;
  try {
    config = JSON.parse(node.textContent || "{}");
  } catch (error) {
    return;
  }
  if (!config.feedback) {
    return;
  }

  var PLACEHOLDERS = ".aigc-slot[data-aigc-slot], [data-aigc-slot-placeholder]";
  var reported = {};
  var queue = [];
  var timer = null;

  function post(payload) {
    var body = JSON.stringify(payload);
    // A plain string is sent as text/plain: no preflight, and the server reads any type.
    if (navigator.sendBeacon && navigator.sendBeacon(config.feedback, body)) {
      return true;
    }
    if (window.fetch) {
      fetch(config.feedback, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        keepalive: true
      }).catch(function () {});
      return true;
    }
    return false;
  }

  function flushImpressions() {
    timer = null;
    while (queue.length) {
      post({ impressions: queue.splice(0, 100) });
    }
  }

  function reportImpression(variantId) {
    var id = parseInt(variantId, 10);
    if (!(id > 0) || reported[id]) {
      return;
    }
    reported[id] = true;
    queue.push(id);
    if (!timer) {
      timer = setTimeout(flushImpressions, 500);
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden" && queue.length) {
      clearTimeout(timer);
      flushImpressions();
    }
  });

  function slotUrl(key, params) {
    var url = config.endpoint + encodeURIComponent(key) + "/";
    return params ? url + "?" + params : url;
  }

  function get(url, asJson) {
    return fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) {
        throw new Error("aigc: " + url + " answered " + response.status);
      }
      return asJson ? response.json() : response.text();
    });
  }

  function fillBanner(placeholder, key) {
    var size = placeholder.getAttribute("data-aigc-size");
    var params = "format=html" + (size ? "&size=" + encodeURIComponent(size) : "");
    return get(slotUrl(key, params), false).then(function (html) {
      // The fragment is this site's own rendering, escaped by the server.
      placeholder.innerHTML = html;
      var shown = placeholder.querySelectorAll("[data-aigc-variant]");
      for (var i = 0; i < shown.length; i++) {
        reportImpression(shown[i].getAttribute("data-aigc-variant"));
      }
    });
  }

  function fillCopy(placeholders, key) {
    return get(slotUrl(key, ""), true).then(function (data) {
      for (var i = 0; i < placeholders.length; i++) {
        var text = data.copy && data.copy[placeholders[i].getAttribute("data-aigc-field")];
        if (typeof text === "string") {
          placeholders[i].textContent = text;
        }
      }
      if (data.variant && !data.is_fallback) {
        reportImpression(data.variant);
      }
    });
  }

  function fillPlaceholders() {
    if (!config.client_mode || !config.endpoint || !window.fetch) {
      return;
    }
    var found = document.querySelectorAll(PLACEHOLDERS);
    var copyByKey = {};
    for (var i = 0; i < found.length; i++) {
      var placeholder = found[i];
      if (placeholder.hasAttribute("data-aigc-variant") || placeholder.aigcFilled) {
        continue;
      }
      placeholder.aigcFilled = true;
      var key =
        placeholder.getAttribute("data-aigc-slot") ||
        placeholder.getAttribute("data-aigc-slot-placeholder");
      if (!key) {
        continue;
      }
      if (placeholder.hasAttribute("data-aigc-field")) {
        (copyByKey[key] = copyByKey[key] || []).push(placeholder);
      } else {
        fillBanner(placeholder, key).catch(function () {});
      }
    }
    for (var slotKey in copyByKey) {
      if (Object.prototype.hasOwnProperty.call(copyByKey, slotKey)) {
        fillCopy(copyByKey[slotKey], slotKey).catch(function () {});
      }
    }
  }

  function clickTarget(token) {
    // The token is "<base64url JSON>:<signature>"; the server checked the target when
    // signing, and the script only follows targets on this origin.
    try {
      var part = token.split(":")[0].replace(/-/g, "+").replace(/_/g, "/");
      while (part.length % 4) {
        part += "=";
      }
      var binary = atob(part);
      var bytes = new Uint8Array(binary.length);
      for (var i = 0; i < binary.length; i++) {
        bytes[i] = binary.charCodeAt(i);
      }
      var data = JSON.parse(new TextDecoder().decode(bytes));
      var target = new URL(data.t, window.location.href);
      return target.origin === window.location.origin ? target.href : null;
    } catch (error) {
      return null;
    }
  }

  document.addEventListener("click", function (event) {
    if (event.defaultPrevented || event.button !== 0) {
      return;
    }
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return;
    }
    var link = event.target.closest ? event.target.closest("a[data-aigc-variant]") : null;
    if (!link || (link.target && link.target !== "_self")) {
      return;
    }
    var match = /\/r\/([^/?#]+)\/?$/.exec(new URL(link.href, window.location.href).pathname);
    if (!match) {
      return;
    }
    var token = decodeURIComponent(match[1]);
    var target = clickTarget(token);
    if (!target || !navigator.sendBeacon) {
      return;
    }
    if (navigator.sendBeacon(config.feedback, JSON.stringify({ clicks: [token] }))) {
      event.preventDefault();
      window.location.assign(target);
    }
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", fillPlaceholders);
  } else {
    fillPlaceholders();
  }
})();
