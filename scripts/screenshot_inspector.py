"""Take docs/inspector.png: the example service (``make example``) under uvicorn, some traffic, the inspector
page in headless chromium (Debian's package, driven by Playwright; nothing is downloaded).

Run: ``.venv/bin/python scripts/screenshot_inspector.py [--output docs/inspector.png] [--tab events]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_serving(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the example service exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/audit", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit("the example service did not start in time")


def traffic(client: httpx.Client) -> None:
    """A little of everything the example does: users created (chained mail events), deleted, refused."""
    for email in ("ada@example.com", "grace@example.com", "linus@example.com", "margaret@example.com"):
        client.post("/users", json={"email": email})
        time.sleep(0.15)
    client.delete("/users/2")
    client.post("/users", json={"email": "not an email"})  # 422: nothing dispatched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "inspector.png")
    parser.add_argument("--tab", default="events", choices=("events", "handlers", "dead", "catalog"))
    args = parser.parse_args()
    chromium = shutil.which(os.environ.get("FASTAPI_EVENTS_CHROMIUM", "/usr/bin/chromium"))
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install -y chromium (or set FASTAPI_EVENTS_CHROMIUM)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "examples.service:app", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_serving(url, proc)
        with sync_playwright() as playwright, httpx.Client(base_url=url, timeout=10) as client:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 760}, device_scale_factor=1)
            page.goto(url + "/_events/")
            page.wait_for_selector("#status:text('live')")
            traffic(client)
            page.wait_for_timeout(2500)  # a few polling rounds
            if args.tab != "events":
                page.click(f'#tabs button[data-tab="{args.tab}"]')
                page.wait_for_timeout(1500)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.output))
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
