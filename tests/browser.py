"""Open a local HTML file in real headless Chromium (Debian's package) over the DevTools protocol.

``inspect_page(path) -> PageCheck``: console errors and exceptions, whether every <img> loaded, the
title and the visible text. Skips the calling test only when no Chromium binary is installed.
"""
from __future__ import annotations

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


def inspect_page(path: str | Path, settle_seconds: float = 1.0) -> PageCheck:
    """Load ``path`` in headless Chromium and report what a person would see go wrong."""
    import websocket

    binary = chromium_binary()
    profile = Path(tempfile.mkdtemp(prefix="fnet-chromium-"))
    process = subprocess.Popen([binary, *_FLAGS, f"--user-data-dir={profile}", "about:blank"],
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
                    return message.get("result", {})

        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            call(domain)
        call("Page.navigate", url=Path(path).resolve().as_uri())
        deadline = time.monotonic() + 30
        loaded = False
        while time.monotonic() < deadline and not loaded:
            message = json.loads(ws.recv())
            _collect(message, errors)
            loaded = message.get("method") == "Page.loadEventFired"
        time.sleep(settle_seconds)
        script = ("JSON.stringify({title: document.title, text: document.body.innerText,"
                  " images: document.images.length,"
                  " loaded: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length})")
        value = json.loads(call("Runtime.evaluate", expression=script, returnByValue=True)["result"]["value"])
        ws.close()
        return PageCheck(value["title"], value["text"], value["images"], value["loaded"], errors)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


def _collect(message: dict, errors: list[str]) -> None:
    method = message.get("method")
    params = message.get("params", {})
    if method == "Runtime.exceptionThrown":
        errors.append(params.get("exceptionDetails", {}).get("text", "exception"))
    elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
    elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        errors.append(params["entry"].get("text", "log error"))
