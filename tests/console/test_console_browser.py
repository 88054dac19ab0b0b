"""The console in a real browser against the real stack: gunicorn serving the API and the console, a
Celery worker, Redis, the MongoDB wire server and the fake providers. An operator goes from "a
tenant complains" to the cause and a re-run that succeeds, and cancels a queued job, by mouse and
keyboard alone; every page is screenshotted under .data/screenshots/ and checked with axe-core."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import factories
import pytest
import requests
from browser import assert_accessible, screenshot, tab_order
from bson import ObjectId
from pymongo.database import Database
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from mwap import broker
from mwap.connections import redis_client
from mwap.settings import Settings
from ops import processes
from ops.fake_providers.control import FakeProviders
from ops.processes import wait_for

pytestmark = pytest.mark.usefixtures("worker")

OPERATOR = "ops-dana"


@pytest.fixture(scope="module")
def console(stack_env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """The API (and its console) under gunicorn, as ops/run and the image serve it."""
    port = processes.free_port()
    api = processes.start_api(env=stack_env, log_dir=log_dir, port=port)
    yield f"http://127.0.0.1:{port}"
    api.stop()


def page_text(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.TAG_NAME, "main").text


def sign_in(driver: webdriver.Chrome, console: str, settings: Settings, start: str = "/console/") -> None:
    """Sign in as an operator would: type the name and the key, press Enter."""
    driver.get(console + start)
    assert "/console/login" in driver.current_url
    driver.find_element(By.ID, "operator").send_keys(OPERATOR)
    key = driver.find_element(By.ID, "key")
    key.send_keys(settings.admin_api_key.get_secret_value())
    key.send_keys(Keys.ENTER)
    WebDriverWait(driver, 10).until(lambda d: "/console/login" not in d.current_url)


def click_link(driver: webdriver.Chrome, text: str) -> None:
    driver.find_element(By.LINK_TEXT, text).click()


def check_page(driver: webdriver.Chrome, name: str) -> None:
    screenshot(driver, f"console-{name}")
    assert_accessible(driver, f"console {name}")


def test_the_sign_in_page_works_by_keyboard_and_is_accessible(
    browser: webdriver.Chrome, console: str, settings: Settings
) -> None:
    browser.get(console + "/console/")
    check_page(browser, "login")
    stops = [stop.id or stop.name for stop in tab_order(browser, 5)]
    assert stops == ["Skip to content", "mwap-tasks console", "operator", "key", "Sign in"]
    # A wrong key says so, next to the form, and keeps the operator on the page.
    browser.find_element(By.ID, "operator").send_keys(OPERATOR)
    key = browser.find_element(By.ID, "key")
    key.send_keys("not-the-admin-key")
    key.send_keys(Keys.ENTER)
    error = WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "login-error"))
    assert "not the admin API key" in error[0].text
    check_page(browser, "login-refused")


def test_from_a_tenant_complaint_to_the_cause_and_a_rerun_that_succeeds(
    browser: webdriver.Chrome,
    console: str,
    settings: Settings,
    db: Database,
    fake: FakeProviders,
    ring: Any,
    admin_headers: dict[str, str],
) -> None:
    # A tenant whose Dropbox listing the provider refuses: its sync fails.
    tenant = factories.tenant(db)
    account = fake.create_account("dropbox", files=["/Reports/q3.pdf", "/Reports/q4.pdf"])
    everything = factories.project(db, tenant["_id"])  # folderPath "/"
    integration = factories.integration_for(db, ring, tenant["_id"], account, project_ids=[everything["_id"]])
    fake.fault(account.id, "status", status=400, count=None, endpoint="dropbox.list_folder")
    answer = requests.post(
        f"{console}/v1/integrations/{integration['_id']}/sync", headers=admin_headers, timeout=10
    )
    assert answer.status_code == 202, answer.text
    failed = factories.wait_final(db, answer.json()["id"])
    assert failed["status"] == "failed", failed

    sign_in(browser, console, settings)
    assert browser.current_url == console + "/console/"
    assert tenant["name"] in page_text(browser)
    check_page(browser, "overview")

    click_link(browser, f"Failed jobs of {tenant['name']}")
    assert "/console/dead-letters" in browser.current_url
    assert failed["_id"] in page_text(browser)
    check_page(browser, "dead-letters")

    click_link(browser, failed["_id"])
    text = page_text(browser)
    assert "failed" in text
    assert failed["error"]["type"] in text
    assert tenant["name"] in text
    check_page(browser, "job-failed")

    # The cause is fixed at the provider; the operator re-runs the job from its page.
    fake.clear_faults(account.id)
    browser.find_element(By.XPATH, "//button[normalize-space()='Re-run this job']").click()
    WebDriverWait(browser, 10).until(lambda d: failed["_id"] not in d.current_url)
    assert "A new job was queued to re-run it." in page_text(browser)
    rerun_id = browser.current_url.rsplit("/", 1)[-1].split("?", 1)[0]
    assert ObjectId.is_valid(rerun_id)

    def shows_success() -> bool:
        browser.refresh()
        return "succeeded" in browser.find_element(By.CSS_SELECTOR, ".lead").text

    wait_for(shows_success, timeout=60, what="the re-run succeeded on its page")
    assert f"Re-run of\n{failed['_id']}" in page_text(browser)
    check_page(browser, "job-rerun-succeeded")
    rerun = db["jobs"].find_one({"_id": rerun_id})
    assert rerun["rerunOf"] == failed["_id"]
    assert rerun["tenantId"] == tenant["_id"]
    assert rerun["subject"] == failed["subject"]
    assert db["virtualFiles"].count_documents({"integrationId": integration["_id"]}) >= 2
    audit = db["auditLogs"].find_one({"target.id": failed["_id"], "action": "job.rerun"})
    assert audit["actor"] == {"type": "operator", "id": OPERATOR, "via": "console"}

    # The rest of the operator's pages, each reached by its link in the navigation.
    for link, name in [
        ("Jobs", "jobs"),
        ("Stuck", "stuck"),
        ("Integrations", "integrations"),
        ("Queues", "queues"),
        ("Beat", "beat"),
    ]:
        click_link(browser, link)
        assert browser.find_element(By.TAG_NAME, "h1").text.startswith(link.split()[0])
        check_page(browser, name)
    browser.get(f"{console}/console/integrations/{integration['_id']}")
    assert rerun_id in page_text(browser)
    check_page(browser, "integration")
    click_link(browser, tenant["name"])
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Tenant {tenant['name']}"
    check_page(browser, "tenant")


def test_an_operator_cancels_a_queued_job(
    browser: webdriver.Chrome,
    console: str,
    settings: Settings,
    db: Database,
    admin_headers: dict[str, str],
) -> None:
    def echo(**params: Any) -> dict[str, Any]:
        answer = requests.post(
            f"{console}/v1/jobs",
            json={"type": "system.echo", "params": params},
            headers=admin_headers,
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        return answer.json()

    # Both of the worker's processes busy, so the next job waits in its queue.
    busy = [echo(message=f"busy {n}", sleepSeconds=8) for n in range(2)]
    wait_for(
        lambda: (
            db["jobs"].count_documents({"_id": {"$in": [j["id"] for j in busy]}, "status": "running"}) == 2
        ),
        timeout=30,
        what="both worker processes busy",
    )
    waiting = echo(message="never runs")
    assert db["jobs"].find_one({"_id": waiting["id"]})["status"] == "queued"

    sign_in(browser, console, settings, start="/console/jobs?type=system.echo&status=queued")
    click_link(browser, waiting["id"])
    browser.find_element(By.XPATH, "//button[normalize-space()='Cancel this job']").click()
    WebDriverWait(browser, 10).until(lambda d: "notice=cancelled" in d.current_url)
    assert "The job was cancelled." in page_text(browser)
    assert "cancelled" in browser.find_element(By.CSS_SELECTOR, ".lead").text
    check_page(browser, "job-cancelled")

    # The worker frees up and takes the message: it finds the job final and runs nothing.
    for job in busy:
        assert factories.wait_final(db, job["id"])["status"] == "succeeded"
    redis = redis_client(settings)
    wait_for(
        lambda: waiting["id"] not in broker.broker_job_ids(redis, held_for=0),
        timeout=30,
        what="the cancelled job's message consumed",
    )
    final = db["jobs"].find_one({"_id": waiting["id"]})
    assert final["status"] == "cancelled"
    assert final["attempts"] == 0
    assert final["result"] is None
    audit = db["auditLogs"].find_one({"target.id": waiting["id"], "action": "job.cancelled"})
    assert audit["actor"]["id"] == OPERATOR
