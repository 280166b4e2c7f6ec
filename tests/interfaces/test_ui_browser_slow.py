"""A person's path through the Prefect UI, in a real headless browser (Debian's chromium, driven by Playwright):
infra/prefect.yaml deployed to a real server with a worker, a custom run of miniplm-pipeline started from the form
with a changed alpha, the run page followed to Completed, its artifacts there. Screenshots land in
docs/screenshots/ (MINIPLM_SCREENSHOTS to move them), which the README links."""

import json
import math
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import miniplm
from miniplm.config import (
    CorpusConfig,
    InstanceConfig,
    PipelineConfig,
    ReferenceConfig,
    SplitConfig,
    StudentConfig,
    TrainConfig,
)
from tests.prefect_server import PREFECT, ROOT, prefect_server, start
from tests.tiny import corpus_texts, write_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# as root and offline: no sandbox, and none of the background connections a closed network refuses
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip
ARTIFACTS = ("run-summary", "stages", "score-histogram", "top-instances", "bottom-instances", "lineage", "students")
SHOTS = Path(os.environ.get("MINIPLM_SCREENSHOTS", ROOT / "docs" / "screenshots"))


def tiny_config(tmp_path, models) -> Path:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", corpus_texts(90))
    config = PipelineConfig(
        workdir=str(tmp_path / "wd"),
        corpus=CorpusConfig(paths=[str(corpus)]),
        teacher=str(models["teacher"]),
        instances=InstanceConfig(max_len=48),
        split=SplitConfig(reference_fraction=0.2, heldout_fraction=0.1),
        reference=ReferenceConfig(train=TrainConfig(max_steps=15, batch_size=4, eval_interval=5), accept_weak=True),
        student=StudentConfig(train=TrainConfig(max_steps=10, batch_size=4, block_size=32, eval_interval=5)),
    )
    path = tmp_path / "pipeline.json"
    path.write_text(config.model_dump_json())
    return path


def api(env: dict, path: str) -> dict:
    with urllib.request.urlopen(env["PREFECT_API_URL"] + path, timeout=10) as response:
        return json.loads(response.read())


def wait_for(check, what: str, timeout_s: float = 600):
    """Poll `check` until it gives a value (not None or False): the event a step needs, never a fixed sleep."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"waited {timeout_s:.0f} s for {what}"
        time.sleep(1)
    return value


def new_run_id(env: dict) -> str | None:
    """The pipeline deployment's run, once the server holds one."""
    body = json.dumps({"deployments": {"name": {"any_": ["miniplm-pipeline"]}}}).encode()
    request = urllib.request.Request(env["PREFECT_API_URL"] + "/flow_runs/filter", data=body,
                                     headers={"content-type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        runs = json.loads(response.read())
    return runs[0]["id"] if runs else None


def final_state(env: dict, run_id: str) -> str | None:
    state = api(env, f"/flow_runs/{run_id}")["state_type"]
    return state if state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None


def shown_after_reload(page, link) -> bool:
    page.reload()
    try:
        link.wait_for(state="visible", timeout=10_000)
    except Exception:  # noqa: BLE001 -- not there yet: reload and look again
        return False
    return True


def test_a_run_started_from_the_form_completes_with_its_artifacts(tmp_path, models):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install chromium (infra/test.sh does)"
    config = tiny_config(tmp_path, models)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with prefect_server(tmp_path) as (env, procs):
        deploy = start([sys.executable, "infra/deploy.py", "--config", str(config), "--watch", str(tmp_path / "in")],
                       env, tmp_path / "deploy.log")  # fmt: skip
        assert deploy.wait(timeout=180) == 0, (tmp_path / "deploy.log").read_text()[-3000:]
        procs.append(start([PREFECT, "worker", "start", "--pool", "miniplm"], env, tmp_path / "worker.log"))
        base = env["PREFECT_API_URL"].removesuffix("/api")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # the deployments the yaml declares, then the pipeline's page and its custom-run form
            page.goto(f"{base}/deployments")
            for name in ("miniplm-pipeline", "miniplm-rescore", "miniplm-experiment"):
                expect(page.get_by_role("link", name=name, exact=True).first).to_be_visible(timeout=30_000)
            page.get_by_role("link", name="miniplm-pipeline", exact=True).first.click()
            page.wait_for_url("**/deployments/deployment/**")
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run").click()
            page.wait_for_url("**/run?**")
            alpha = page.locator("xpath=//label[normalize-space()='Alpha (Optional)']/following::input[1]")
            expect(alpha).to_have_value("0.5")
            page.screenshot(path=str(SHOTS / "run-form.png"))
            alpha.fill("0.3")
            alpha.press("Tab")
            expect(alpha).to_have_value("0.3")
            page.screenshot(path=str(SHOTS / "run-form-alpha.png"))
            page.get_by_role("button", name="Submit").click()
            # the event the rest waits for: the server holds the new run (on a loaded machine the form's request,
            # the redirect and the worker's pick-up each take their time; none has a fixed allowance)
            run_id = wait_for(lambda: new_run_id(env), "the submitted run", timeout_s=300)
            # back on the deployment's runs: the new run's link, followed to its end
            page.wait_for_url("**tab=Runs", timeout=300_000)
            link = page.locator(f"a[href*='/runs/flow-run/{run_id}']").first
            # the tab hides scheduled runs: the new one shows once the worker has picked it up
            wait_for(lambda: api(env, f"/flow_runs/{run_id}")["state_type"] != "SCHEDULED", "the worker's pick-up")
            wait_for(lambda: shown_after_reload(page, link), "the run's link on the Runs tab", timeout_s=300)
            link.click()
            page.wait_for_url(f"**/runs/flow-run/{run_id}**")
            state = wait_for(lambda: final_state(env, run_id), "the run's end", timeout_s=600)
            assert state == "COMPLETED", (tmp_path / "worker.log").read_text()[-5000:]
            page.reload()
            badge = page.locator(".page-heading-flow-run__meta .state-badge").first
            expect(badge).to_have_text("Completed", timeout=60_000)
            page.screenshot(path=str(SHOTS / "run-completed.png"))
            page.get_by_text("Artifacts", exact=True).first.click()
            for key in ARTIFACTS:
                expect(page.get_by_text(key, exact=True).first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(SHOTS / "run-artifacts.png"), full_page=True)
            # the histogram renders as a chart on its artifact's page
            page.get_by_text("score-histogram", exact=True).first.click()
            expect(page.get_by_text("█").first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(SHOTS / "score-histogram.png"), full_page=True)
            browser.close()
        # the run received a PipelineConfig with the edited alpha, and the selection used it
        run = api(env, f"/flow_runs/{run_id}")
        assert run["parameters"]["config"]["select"]["alpha"] == 0.3
        assert run["parameters"]["config"]["workdir"] == str(tmp_path / "wd")
        selections = miniplm.open(tmp_path / "wd").sql("select alpha, n_candidates, n_nonfinite, n_selected from "
                                                      "selections").fetchall()  # fmt: skip
        assert len(selections) == 1
        alpha_used, candidates, nonfinite, selected = selections[0]
        assert alpha_used == 0.3 and selected == math.floor(0.3 * (candidates - nonfinite))
