"""Use a freshly installed project over HTTP as a browser and a shop's server would."""

import http.cookiejar
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

base = sys.argv[1]
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
opener.addheaders = [("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0")]


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    csrf = next((c.value for c in jar if c.name == "csrftoken"), None)
    if csrf:
        request.add_header("X-CSRFToken", csrf)
    request.add_header("Referer", base + "/")
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def count_events():
    out = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from aigc_django.models import Event; print(Event.objects.count())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


for _ in range(100):
    try:
        urllib.request.urlopen(base + "/aigc/api/me/", timeout=1)
    except urllib.error.HTTPError:
        break
    except OSError:
        time.sleep(0.2)

status, body = call("GET", "/product/SKU-1/")
assert status == 200 and body == {"tracked": True}, (status, body)
assert any(c.name == "aigc_vid" for c in jar), "no visitor cookie"
assert count_events() == 1

status, body = call("POST", "/aigc/api/events/", [{"kind": "search", "properties": {"q": "boots"}}])
assert status == 202 and body == {"accepted": 1}, (status, body)

status, body = call("POST", "/aigc/api/events/", [{"kind": "search"}, {"kind": "nope"}])
assert status == 400 and body["errors"][0]["index"] == 1, (status, body)
assert count_events() == 2, "a bad batch stored something"

status, body = call("GET", "/aigc/api/me/")
assert status == 200 and len(body["events"]) == 2, (status, body)
status, body = call("DELETE", "/aigc/api/me/")
assert status == 200 and body["erased"]["events"] == 2, (status, body)
assert count_events() == 0
print("fresh project: cookie, track(), ingest API, bad batch refused, erasure: all work")
