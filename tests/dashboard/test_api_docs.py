"""GET /docs in a real browser: the page shipped with the app renders every operation of /openapi.json and
each schema, with no request leaving the server."""

from __future__ import annotations

import pytest
import requests

from tests.helpers import sqlite_url, system_env, web_service


@pytest.fixture(scope="module")
def web(redis_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("api-docs")
    service = web_service(system_env(sqlite_url(workdir), redis_server.url), workdir).start()
    yield service
    service.stop(timeout=20)


def test_the_docs_page_lists_every_operation_and_schema(web, new_page):
    document = requests.get(f"{web.url}/openapi.json", timeout=10).json()
    operations = [f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item]
    page = new_page()
    elsewhere = []
    page.on("request", lambda request: None if request.url.startswith(web.url) else elsewhere.append(request.url))
    page.goto(f"{web.url}/docs")
    page.locator("section.operation").nth(len(operations) - 1).wait_for()
    shown = page.locator("section.operation h3 code").all_inner_texts()
    assert shown == operations
    assert page.locator("#schema-JobRequest").is_visible()
    assert page.locator("#schema-ErrorEnvelope").count() == 1
    assert page.errors == [] and elsewhere == []
