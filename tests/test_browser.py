"""The 2-D latent explorer in a real browser (issue 9): JupyterLab serves notebook 05, headless
Chromium runs every cell from the Run menu, drags the explorer's z1 and z2 sliders, and the decoded
image shown in the page must change.

Needs the Python package `playwright` (requirements.txt) and a Chromium executable: Debian's
`chromium` package (`apt-get install chromium`; .ci/run installs it), `chromium-browser`, or the path
in DGM_CHROMIUM. Playwright never downloads a browser here. Outside CI the test is skipped with a
message when either is missing; DGM_BROWSER_NOTEBOOK runs it on another notebook with a
LatentExplorer2D. Screenshots go to reports/browser/ (ignored by git), also when the test fails.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "05_latent_space.ipynb"
ARTEFACTS = ROOT / "reports" / "browser"
STARTUP_TIMEOUT = 180          # s until the server answers and the notebook's kernel is idle
RUN_TIMEOUT = 420              # s for Run All Cells (notebook 05 takes 2-3 minutes on 2 busy cores)
WIDGET_TIMEOUT = 60            # s for a widget to render, or a slider move to reach the image

# JupyterLab user settings, so that no dialog, news toast or autosave gets in the way: the notebook
# in the repository is never saved (the server's log is checked at the end) and every cell stays
# in the DOM.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
}


def notebook_path() -> Path:
    return Path(os.environ.get("DGM_BROWSER_NOTEBOOK") or NOTEBOOK).expanduser().resolve()


def find_chromium() -> str | None:
    chosen = os.environ.get("DGM_CHROMIUM")
    if chosen:
        return shutil.which(chosen)
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)


def _requirements() -> str | None:
    """Why the test cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install -r requirements.txt)"
    if find_chromium() is None:
        where = os.environ.get("DGM_CHROMIUM") or "chromium or chromium-browser on PATH"
        return f"no Chromium executable ({where}); install it with `apt-get install chromium` or set DGM_CHROMIUM"
    return None


MISSING = _requirements()
pytestmark = pytest.mark.skipif(bool(MISSING) and not os.environ.get("CI"),
                                reason=f"browser test skipped: {MISSING}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no server log)"


def _check_kernel(env: dict, notebook: Path) -> None:
    """The notebook asks for python3, and python3 here is this interpreter (the venv's)."""
    asked = json.loads(notebook.read_text()).get("metadata", {}).get("kernelspec", {}).get("name", "python3")
    assert asked == "python3", f"{notebook.name} asks for kernel {asked!r}; the browser test runs python3"
    listed = subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"], env=env,
                            capture_output=True, text=True, timeout=120, check=True)
    spec = json.loads(listed.stdout)["kernelspecs"].get("python3")
    assert spec, f"no python3 kernel: {listed.stdout}"
    command = spec["spec"]["argv"][0]
    # jupyter_client starts "python", "python3" and "python3.X" with the server's own interpreter
    aliases = {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}
    assert command in aliases or Path(command).resolve() == Path(sys.executable).resolve(), \
        f"the python3 kernel runs {command} ({spec['resource_dir']}), not {sys.executable}"


class Lab:
    """A JupyterLab server on 127.0.0.1 with a token, its state in a temporary folder."""

    def __init__(self, notebook: Path, home: Path):
        self.notebook, self.home = notebook, home
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / "server.log"
        for folder in ("config", "data", "runtime", "ipython", "settings", "workspaces", "checkpoints", "npm"):
            (home / folder).mkdir()
        for plugin, values in LAB_SETTINGS.items():
            path = home / "settings" / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        # DGM_DATA_DIR, MPLBACKEND, OMP_NUM_THREADS, ... pass through to the kernel
        self.env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
                        JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
                        npm_config_cache=str(home / "npm"),      # JupyterLab asks npm, which logs there
                        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        self.env.setdefault("MPLBACKEND", "Agg")
        self.process = None

    def start(self) -> None:
        _check_kernel(self.env, self.notebook)
        idle = str(2 * RUN_TIMEOUT + 600)     # a server left behind by a killed pytest ends by itself
        command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
                   f"--port={self.port}", "--ServerApp.port_retries=0",
                   f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.notebook.parent}",
                   "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None",
                   "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
                   "--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly",
                   f"--LabApp.user_settings_dir={self.home / 'settings'}",
                   f"--LabApp.workspaces_dir={self.home / 'workspaces'}",
                   f"--FileCheckpoints.checkpoint_dir={self.home / 'checkpoints'}",
                   f"--MappingKernelManager.cull_idle_timeout={idle}",
                   f"--ServerApp.shutdown_no_activity_timeout={idle}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")          # CI containers run as root
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=self.home, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n{_tail(self.log)}")
            try:
                with self.request("/api/status", timeout=5) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise TimeoutError(f"jupyter lab did not answer within {STARTUP_TIMEOUT} s:\n{_tail(self.log)}")

    def request(self, path: str, method: str = "GET", timeout: float = 10):
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        return urllib.request.urlopen(req, timeout=timeout)

    def stop(self) -> None:
        """Shut down the server and its kernels; whatever is left of them is killed."""
        if self.process is None:
            return
        try:
            import psutil
            started = psutil.Process(self.process.pid).children(recursive=True)   # kernels have their own session
        except Exception:
            started = []
        try:
            self.request("/api/shutdown", method="POST").close()
            self.process.wait(timeout=30)
        except Exception:
            pass
        if self.process.poll() is None:                 # no clean exit: the whole process group goes
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.process.pid, sig)
                    self.process.wait(timeout=10)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
        for child in started:                         # psutil checks the pid was not reused
            try:
                child.kill()
            except Exception:
                pass
        self.process = None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if MISSING:
        pytest.fail(f"CI must run the browser test, but {MISSING}; .ci/run installs chromium")
    notebook = notebook_path()
    if not notebook.is_file():
        pytest.skip(f"browser test skipped: {notebook} does not exist (yet)")
    server = Lab(notebook, tmp_path_factory.mktemp("jupyterlab"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


# The notebook's state, read from the JupyterLab application (exposed with expose_app_in_browser).
STATE_JS = """(name) => {
  const app = window.jupyterapp;
  if (!app) return null;
  const panel = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === name);
  if (!panel || !panel.content || !panel.content.model || !panel.sessionContext) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const state = {kernel: kernel ? kernel.status : 'none', name: kernel ? kernel.name : null,
                 cells: 0, done: 0, errors: [], running: 0};
  const cells = panel.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code' || !cell.sharedModel.getSource().trim()) continue;
    state.cells++;
    if (cell.executionCount) state.done++;
    for (let j = 0; j < cell.outputs.length; j++) {
      const out = cell.outputs.get(j).toJSON();
      if (out.output_type === 'error') state.errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
    }
  }
  state.running = Array.from(panel.node.querySelectorAll('.jp-InputPrompt'))
                       .filter(p => p.textContent.includes('*')).length;
  return state;
}"""

# Marks every LatentExplorer2D in the page (data-dgm-explorer = 0, 1, ...): the innermost box holding
# the sliders labelled z1 and z2 and the images.
MARK_EXPLORERS_JS = """() => {
  const labelled = (el, text) => Array.from(el.querySelectorAll('.widget-slider .widget-label'))
                                      .some(l => l.textContent.trim() === text);
  const found = [];
  for (const label of document.querySelectorAll('.widget-slider .widget-label')) {
    if (label.textContent.trim() !== 'z1') continue;
    let el = label.closest('.widget-slider');
    while (el && !(el.classList.contains('widget-box') && labelled(el, 'z2') && el.querySelector('img')))
      el = el.parentElement;
    if (el && !found.includes(el)) found.push(el);
  }
  found.forEach((el, i) => el.setAttribute('data-dgm-explorer', String(i)));
  return found.length;
}"""

# The bytes the <img> shows (ipywidgets 8 sets blob: URLs, older versions data: URLs); null while
# there is none, or when the widget revoked the URL for a newer image between reading and fetching it.
IMAGE_JS = """async (img) => {
  if (!img.src) return null;
  let bytes;
  try { bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer()); } catch (e) { return null; }
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return {src: img.src, png: btoa(text), width: img.naturalWidth};
}"""


def _wait(what: str, probe, timeout: float, interval: float = 1.0):
    """probe() until it returns something true; its last value goes into the timeout message."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last state: {last}")


def _accept_dialogs(page, seen: list) -> None:
    """No dialog is expected (settings above); one that appears anyway is accepted and reported."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count() and dialog.first.is_visible():
        seen.append(dialog.first.inner_text()[:200])
        page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").first.click()


def _menu(page, menu: str, *commands: str) -> None:
    """Click menu > the item bound to one of `commands` (the menu's id, or the notebook's own)."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(rf"^\s*{menu}\s*$")).click()
    item = page.locator(", ".join(f'.lm-Menu .lm-Menu-item[data-command="{c}"]' for c in commands)).first
    item.wait_for(state="visible")
    item.click()


def _pixels(shown: dict):
    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(shown["png"]))).convert("RGB"))


def _drag(page, slider, fraction: float) -> None:
    """Drag the slider's handle to `fraction` of its track with the mouse."""
    handle, track = slider.locator(".noUi-handle").first, slider.locator(".noUi-target").first
    handle.scroll_into_view_if_needed()
    h, t = handle.bounding_box(), track.bounding_box()
    assert h and t, "the slider is not laid out"
    y = h["y"] + h["height"] / 2
    page.mouse.move(h["x"] + h["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(t["x"] + fraction * t["width"], y, steps=12)
    page.mouse.up()


def _screenshot(target, path: Path, shots: list) -> None:
    try:
        target.screenshot(path=str(path))
        shots.append(path)
    except Exception as err:          # a screenshot must not hide the real failure
        print(f"screenshot {path} failed: {err}")


def test_latent_explorer_sliders_change_the_decoded_image_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    name = lab.notebook.name
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    stem = lab.notebook.stem
    for old in ARTEFACTS.glob(f"{stem}_*.png"):     # the folder shows the last run only
        old.unlink()
    shots, dialogs, started = [], [], time.monotonic()
    with sync_playwright() as p:
        home = lab.home / "browser"                 # Chromium's crash reports and caches stay out of $HOME
        env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / "config"),
                   XDG_CACHE_HOME=str(home / "cache"))
        browser = p.chromium.launch(executable_path=find_chromium(), headless=True, env=env,
                                    args=["--disable-dev-shm-usage", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(WIDGET_TIMEOUT * 1000)
        passed = False
        try:
            page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}", timeout=STARTUP_TIMEOUT * 1000)
            state = lambda: page.evaluate(STATE_JS, name)

            def kernel_ready():
                _accept_dialogs(page, dialogs)
                s = state()
                return s if s and s["kernel"] == "idle" else None

            ready = _wait("the notebook to open with an idle kernel", kernel_ready, STARTUP_TIMEOUT)
            assert ready["name"] == "python3", ready

            # stored outputs and execution counts go first, so that "done" means done in this run
            _menu(page, "Edit", "editmenu:clear-all", "notebook:clear-all-cell-outputs")
            _wait("the outputs to clear", lambda: state()["done"] == 0 or None, WIDGET_TIMEOUT)
            _menu(page, "Run", "runmenu:run-all", "notebook:run-all-cells")
            t_run = time.monotonic()

            def finished():
                _accept_dialogs(page, dialogs)
                s = state()
                if s["kernel"] == "idle" and not s["running"] and (s["errors"] or s["done"] == s["cells"]):
                    time.sleep(1)               # idle between two queued cells is not the end
                    again = state()
                    return again if again["kernel"] == "idle" and not again["running"] else None
                return None

            result = _wait("Run All Cells to finish", finished, RUN_TIMEOUT, interval=2)
            run_seconds = time.monotonic() - t_run
            assert not result["errors"], f"{name} raised: {result['errors']}"
            assert result["done"] == result["cells"], result
            print(f"\n{name}: {result['cells']} code cells ran in {run_seconds:.0f} s")

            count = _wait("a LatentExplorer2D (sliders z1, z2 and images) to render",
                          lambda: page.evaluate(MARK_EXPLORERS_JS), WIDGET_TIMEOUT)
            for index in range(count):
                explorer = page.locator(f'[data-dgm-explorer="{index}"]')
                tagged = explorer.locator("img.dgm-decoded")
                decoded = tagged.first if tagged.count() else explorer.locator("img").last
                shown = lambda: decoded.evaluate(IMAGE_JS)
                first = _wait("the decoded image", lambda: (s := shown()) and s["width"] and s, WIDGET_TIMEOUT)
                explorer.scroll_into_view_if_needed()
                _screenshot(explorer, ARTEFACTS / f"{stem}_explorer{index}_before.png", shots)

                readouts = []
                for label, fraction in (("z1", 0.85), ("z2", 0.15)):
                    slider = explorer.locator(".widget-slider").filter(
                        has=page.locator(".widget-label", has_text=re.compile(rf"^\s*{label}\s*$"))).first
                    readout = slider.locator(".widget-readout").first
                    old = readout.inner_text()
                    _drag(page, slider, fraction)
                    _wait(f"the {label} readout to move from {old}", lambda: readout.inner_text() != old,
                          WIDGET_TIMEOUT)
                    readouts.append(f"{label} {old} -> {readout.inner_text()}")

                def changed():
                    now = shown()
                    if now and now["png"] != first["png"]:
                        return now
                    return None

                last = _wait(f"the decoded image to change ({', '.join(readouts)})", changed, WIDGET_TIMEOUT)
                assert last["png"] != first["png"]
                a, b = _pixels(first), _pixels(last)
                assert a.shape != b.shape or (a != b).any(), "new PNG bytes, same pixels"
                moved = f"{(a != b).any(axis=-1).mean():.0%} of pixels" if a.shape == b.shape else "new size"
                print(f"explorer {index}: {', '.join(readouts)}; decoded image changed ({moved})")
                _wait("the kernel to finish the update", lambda: state()["kernel"] == "idle", WIDGET_TIMEOUT)
                time.sleep(1)                           # the scatter arrives after the decoded image
                _screenshot(explorer, ARTEFACTS / f"{stem}_explorer{index}_after.png", shots)
            passed = True
        finally:
            _screenshot(page, ARTEFACTS / f"{stem}_{'page' if passed else 'failure'}.png", shots)
            browser.close()
            print(f"browser test of {name}: {time.monotonic() - started:.0f} s; screenshots: "
                  + ", ".join(map(str, shots)) + (f"; dialogs accepted: {dialogs}" if dialogs else ""))
    saved = [line for line in lab.log.read_text(errors="replace").splitlines() if "Saving file at" in line]
    assert not saved, f"the browser test saved files through JupyterLab: {saved}"
