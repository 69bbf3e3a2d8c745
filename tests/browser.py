"""Open a local HTML file in real headless Chromium (Debian's package) over the DevTools protocol.

``inspect_page(path) -> PageCheck``: console errors and exceptions, whether every <img> loaded, the
title and the visible text. ``inspect_layout(path, sections, shots, width=1280, height=800) -> LayoutCheck``:
at that window size, what in the named sections (``<h2 id=...>`` up to the next ``<h2>``) is wider than
its container or the page, with every details element closed and then open; the images that did not
load; the in-page links of the findings table that point at no element; whether each show-all control
shows the hidden rows; and a PNG screenshot of each section written to ``shots``.
Skips the calling test only when no Chromium binary is installed.
"""
from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--remote-debugging-port=0", "--remote-allow-origins=*"]


@dataclass
class PageCheck:
    title: str
    text: str
    images: int
    images_loaded: int
    console_errors: list[str] = field(default_factory=list)


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium installed (apt-get install chromium); .ci/run installs it")


def _debugger_url(profile: Path, process: subprocess.Popen, timeout: float = 30.0) -> str:
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            port = port_file.read_text().split()[0]
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                pages = [t for t in json.load(response) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with status {process.returncode}")
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


@contextlib.contextmanager
def _page(path: str | Path, settle_seconds: float, viewport: tuple[int, int] | None = None):
    """A headless Chromium with ``path`` loaded: yields ``(call, errors)``, ``call(method, **params)``
    sending one DevTools command and returning its result."""
    import websocket

    binary = chromium_binary()
    profile = Path(tempfile.mkdtemp(prefix="fnet-chromium-"))
    size = [f"--window-size={viewport[0]},{viewport[1]}"] if viewport else []
    process = subprocess.Popen([binary, *_FLAGS, *size, f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ws = websocket.create_connection(_debugger_url(profile, process), timeout=30)
        counter = iter(range(1, 10_000))
        errors: list[str] = []

        def call(method: str, **params):
            ident = next(counter)
            ws.send(json.dumps({"id": ident, "method": method, "params": params}))
            while True:
                message = json.loads(ws.recv())
                _collect(message, errors)
                if message.get("id") == ident:
                    if "error" in message:
                        raise RuntimeError(f"DevTools {method}: {message['error']}")
                    return message.get("result", {})

        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            call(domain)
        if viewport:
            call("Emulation.setDeviceMetricsOverride", width=viewport[0], height=viewport[1], deviceScaleFactor=1,
                 mobile=False)
        call("Page.navigate", url=Path(path).resolve().as_uri())
        deadline = time.monotonic() + 30
        loaded = False
        while time.monotonic() < deadline and not loaded:
            message = json.loads(ws.recv())
            _collect(message, errors)
            loaded = message.get("method") == "Page.loadEventFired"
        time.sleep(settle_seconds)
        yield call, errors
        ws.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


def _evaluate(call, script: str):
    return json.loads(call("Runtime.evaluate", expression=script, returnByValue=True)["result"]["value"])


def inspect_page(path: str | Path, settle_seconds: float = 1.0) -> PageCheck:
    """Load ``path`` in headless Chromium and report what a person would see go wrong."""
    with _page(path, settle_seconds) as (call, errors):
        script = ("JSON.stringify({title: document.title, text: document.body.innerText,"
                  " images: document.images.length,"
                  " loaded: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length})")
        value = _evaluate(call, script)
        return PageCheck(value["title"], value["text"], value["images"], value["loaded"], list(errors))


@dataclass
class LayoutCheck:
    overflows: list[str]          # "<section>: <what> is <n> px wider than <its container | the page>"
    missing_sections: list[str]
    broken_images: list[str]
    broken_links: list[str]       # hrefs of the findings table that point at no element
    finding_links: dict[str, int]  # finding row id -> number of evidence links
    expanders: list[tuple[int, int, int]]  # per show-all control: rows shown before, after, in all
    screenshots: dict[str, Path] = field(default_factory=dict)
    console_errors: list[str] = field(default_factory=list)


_SECTION_JS = """
function sectionParts(id) {
  const head = document.getElementById(id);
  if (!head) return null;
  const parts = [head];
  for (let e = head.nextElementSibling; e && e.tagName !== 'H2'; e = e.nextElementSibling) parts.push(e);
  return parts;
}
"""

_OVERFLOW_JS = _SECTION_JS + """
(function(ids) {
  const out = {overflows: [], missing: []};
  const pageRight = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > pageRight + 1)
    out.overflows.push('page: the document is ' + (document.documentElement.scrollWidth - pageRight) + ' px wider than the window');
  for (const id of ids) {
    const parts = sectionParts(id);
    if (!parts) { out.missing.push(id); continue; }
    for (const part of parts) {
      for (const el of [part, ...part.querySelectorAll('.wide, table, figure, img, pre')]) {
        const what = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
          (el.closest('[id]') ? ' in #' + el.closest('[id]').id : '');
        if (el.offsetParent === null && el.tagName !== 'BODY') continue;
        if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0)
          out.overflows.push(id + ': ' + what + ' scrolls (' + (el.scrollWidth - el.clientWidth) + ' px cut off)');
        const box = el.getBoundingClientRect(), parent = el.parentElement.getBoundingClientRect();
        if (box.right > parent.right + 1)
          out.overflows.push(id + ': ' + what + ' is ' + Math.round(box.right - parent.right) + ' px wider than its container');
        if (box.right > pageRight + 1)
          out.overflows.push(id + ': ' + what + ' is ' + Math.round(box.right - pageRight) + ' px wider than the page');
      }
    }
  }
  return JSON.stringify(out);
})
"""


def inspect_layout(path: str | Path, sections, shots: str | Path, *, width: int = 1280, height: int = 800,
                   settle_seconds: float = 1.0) -> LayoutCheck:
    """Load ``path`` at ``width`` × ``height`` and check the ``sections`` (ids of their ``<h2>``); see the module."""
    shots = Path(shots)
    shots.mkdir(parents=True, exist_ok=True)
    ids = json.dumps(list(sections))
    with _page(path, settle_seconds, (width, height)) as (call, errors):
        closed = _evaluate(call, f"{_OVERFLOW_JS}({ids})")
        _evaluate(call, "document.querySelectorAll('details').forEach(d => d.open = true); '1'")
        opened = _evaluate(call, f"{_OVERFLOW_JS}({ids})")
        _evaluate(call, "document.querySelectorAll('details').forEach(d => d.open = false); '1'")
        overflows = list(dict.fromkeys(closed["overflows"] + [f"(details open) {o}" for o in opened["overflows"]]))
        others = _evaluate(call, """JSON.stringify({
          images: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
          links: Array.from(document.querySelectorAll('#findings-table a[href^="#"]'))
                   .map(a => a.getAttribute('href')).filter(h => !document.getElementById(h.slice(1))),
          findings: Object.fromEntries(Array.from(document.querySelectorAll('#findings-table tbody tr'))
                   .map(r => [r.id, r.querySelectorAll('a[href^="#"]').length]))})""")
        expanders = _evaluate(call, """JSON.stringify(Array.from(document.querySelectorAll('.tbl > input')).map(box => {
          const rows = () => Array.from(box.parentElement.querySelectorAll('tbody tr')).filter(r => r.offsetParent !== null).length;
          const before = rows();
          box.parentElement.querySelector('label[for="' + box.id + '"]').click();
          const after = rows();
          box.checked = false;
          return [before, after, box.parentElement.querySelectorAll('tbody tr').length];
        }))""")
        screenshots = {}
        for section in sections:
            box = _evaluate(call, f"""{_SECTION_JS}(function() {{
              const parts = sectionParts({json.dumps(section)});
              if (!parts) return 'null';
              const top = parts[0].getBoundingClientRect().top + window.scrollY;
              const bottom = Math.max(...parts.map(p => p.getBoundingClientRect().bottom)) + window.scrollY;
              return JSON.stringify({{top: top - 8, height: bottom - top + 16}});
            }})()""")
            if box is None:
                continue
            shot = call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": box["top"], "width": width, "height": box["height"], "scale": 1})
            screenshots[section] = shots / f"{section}.png"
            screenshots[section].write_bytes(base64.b64decode(shot["data"]))
        return LayoutCheck(overflows, closed["missing"], others["images"], others["links"], others["findings"],
                           [tuple(e) for e in expanders], screenshots, list(errors))


def _collect(message: dict, errors: list[str]) -> None:
    method = message.get("method")
    params = message.get("params", {})
    if method == "Runtime.exceptionThrown":
        errors.append(params.get("exceptionDetails", {}).get("text", "exception"))
    elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
    elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        errors.append(params["entry"].get("text", "log error"))
