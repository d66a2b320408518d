"""A headless Chromium on a viewer page, for tests, benchmarks and scripted screenshots: Debian's
``chromium`` and ``chromium-driver`` driven through selenium (nothing is downloaded at run time).

    with viewer_page(viewer, 640, 360) as (driver, client):
        client.camera.position = ...            # the viewer's own API moves the page's camera
        driver.save_screenshot("view.png")
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager

from scenes.errors import InputError

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run")
"""WebGL in software (SwiftShader), and none of the background connections a closed network refuses."""


def chromium_paths() -> tuple[str, str] | None:
    """Debian's chromium and chromedriver, or None when either is missing."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def viewer_page(viewer, width: int = 640, height: int = 360, collapse_panel: bool = True, timeout: float = 60.0):
    """A headless browser showing ``viewer``'s page at a ``width`` x ``height`` viewport (viser's page
    needs about 400 px or more), yielding the selenium driver and the viewer's handle of that
    browser tab once its camera has reported in. ``collapse_panel``: fold the control panel away
    (its 48-px handle stays in the top-right corner), so the canvas shows the render."""
    paths = chromium_paths()
    if paths is None:
        raise InputError("viewer", "chromium", "needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for flag in FLAGS:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(paths[1]), options=opts)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        known = set(viewer.loops)
        driver.get(f"http://127.0.0.1:{viewer.cfg.port}")
        deadline = time.monotonic() + timeout
        while True:
            new = [loop for cid, loop in list(viewer.loops.items()) if cid not in known]
            if new and new[0].client.camera.update_timestamp:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page did not connect to the viewer within {timeout} s")
            time.sleep(0.2)
        if collapse_panel:
            driver.execute_script("document.querySelector('svg.tabler-icon-chevron-right').closest('button, div').click()")
            time.sleep(1.5)  # the collapse animation resizes the canvas for a moment
        yield driver, new[0].client
    finally:
        driver.quit()
