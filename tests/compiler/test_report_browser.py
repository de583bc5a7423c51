"""The compile report in a real browser: headless Chromium loads the page
of a small model and of a split-mode binary over 2 cards x 2 clusters, and
its DOM (--dump-dom) shows no script error, every layer listed and the
schedule drawn, one row per lane. Without Chromium the tests are skipped,
unless TESSERA_REQUIRE_BROWSER=1 (CI: .ci/run installs Debian's chromium)."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compiler.report import gather_report, render_page
from runtime.files import write_atomic
from tests.helpers import report_models

BROWSERS = ("chromium", "chromium-browser", "/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000")
HOSTILE = '</script><img src=x onerror="document.body.dataset.pwned=1"><!--'


def browser() -> str:
    """The Chromium to run; a skip (a failure with TESSERA_REQUIRE_BROWSER=1) without one."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    reason = "headless Chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("TESSERA_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and TESSERA_REQUIRE_BROWSER=1 asks for the browser test")
    pytest.skip(reason)


def dump_dom(page: Path, tmp_path: Path) -> str:
    """The page's DOM once its scripts have run."""
    command = [browser(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def body_data(dom: str) -> dict[str, str]:
    """The data-* attributes of the body element."""
    body = re.search(r"<body([^>]*)>", dom)
    assert body, "no body in the DOM dump"
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1)))


def script_errors(dom: str) -> str:
    found = re.search(r'<pre id="errors"[^>]*>(.*?)</pre>', dom, re.S)
    assert found, "the page lost its error record"
    return html.unescape(found.group(1))


def rendered(data: dict, tmp_path: Path) -> tuple[str, dict[str, str]]:
    page = tmp_path / "report.html"
    write_atomic(page, render_page(data))
    dom = dump_dom(page, tmp_path)
    marks = body_data(dom)
    assert script_errors(dom) == ""
    assert marks.get("rendered") == "1", marks
    return dom, marks


@pytest.mark.parametrize("binary", [report_models.small_binary, report_models.split_binary], ids=["small", "split"])
def test_the_page_lists_every_layer_and_draws_the_schedule(binary, tmp_path):
    data = gather_report(binary())
    dom, marks = rendered(data, tmp_path)
    assert int(marks["layers"]) == len(data["layers"])
    rows = re.findall(r'<tr class="(device|cpu)" data-layer="(\d+)"', dom)
    assert [int(i) for _, i in rows] == list(range(len(data["layers"])))
    for layer in data["layers"]:
        assert f'<span class="name">{html.escape(layer["name"], quote=False)}</span>' in dom
    schedule = data["schedule"]
    bars = len(schedule["spans"]) // len(schedule["fields"])
    assert int(marks["bars"]) == bars > 0
    assert len(re.findall(r'<rect class="k\d( a)?" data-i="\d+"', dom)) == bars
    assert int(marks["lanes"]) == len(schedule["lanes"])
    assert len(re.findall(r'<rect class="(row|odd)"', dom)) == len(schedule["lanes"])
    assert float(marks["render-ms"]) > 0


def test_split_mode_shows_its_barriers_and_every_cluster(tmp_path):
    data = gather_report(report_models.split_binary())
    dom, marks = rendered(data, tmp_path)
    assert int(marks["lanes"]) == 12
    assert f'<rect class="k{data["schedule"]["kinds"].index("barrier")}' in dom
    for card in (0, 1):
        for cluster in (0, 1):
            assert f"card {card} · cluster {cluster} · compute" in dom


def test_hostile_names_and_records_stay_text(tmp_path):
    data = json.loads(json.dumps(gather_report(report_models.small_binary())))
    data["layers"][0]["name"] = HOSTILE
    data["layers"][0]["onnx"] = [HOSTILE]
    data["model"]["source"] = HOSTILE
    data["cpu_nodes"][0][2] = HOSTILE
    data["model"]["records"].update(split=HOSTILE, preprocess=5, quantization=[HOSTILE], placement={"mode": HOSTILE},
                                    head_grids={HOSTILE: [HOSTILE]})
    dom, marks = rendered(data, tmp_path)
    assert "pwned" not in marks
    assert not re.search(r"<img\b", dom)
    assert html.escape(HOSTILE, quote=False) in dom


INTERACTIONS = """<script>
(function () {
  const click = (node) => node.dispatchEvent(new MouseEvent("click", {bubbles: true}));
  click(document.querySelector(".chip"));
  document.querySelectorAll("#layer-table th.sort").forEach(click);
  click(document.querySelector("#layer-table tbody tr td"));
  const bar = document.querySelector("rect[data-i]");
  bar.dispatchEvent(new MouseEvent("mousemove", {bubbles: true, clientX: 10, clientY: 10}));
  click(bar);
  document.querySelectorAll(".controls button").forEach(click);
  document.body.dataset.tip = document.getElementById("tip").textContent.split("\\n")[0];
  document.body.dataset.highlighted = String(document.querySelectorAll("#highlight rect").length);
  document.body.dataset.selected = String(document.querySelectorAll("#layer-table tr.selected").length);
})();
</script>
</body>"""


def test_clicks_zoom_and_hover_raise_no_script_error(tmp_path):
    data = gather_report(report_models.split_binary())
    page = tmp_path / "report.html"
    write_atomic(page, render_page(data).replace("</body>", INTERACTIONS))
    dom = dump_dom(page, tmp_path)
    assert script_errors(dom) == ""
    marks = body_data(dom)
    assert marks["rendered"] == "1" and marks["selected"] == "1" and int(marks["highlighted"]) > 0
    assert marks["tip"].split(" (")[0] in {layer["name"] for layer in data["layers"]}


def test_without_chromium_the_tests_skip_unless_the_browser_is_required(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "BROWSERS", ("no-such-browser-on-this-host",))
    monkeypatch.delenv("TESSERA_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Chromium is not installed"):
        browser()
    monkeypatch.setenv("TESSERA_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="TESSERA_REQUIRE_BROWSER=1"):
        browser()
