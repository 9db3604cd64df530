"""The lineage graph in the real Chromium: the server-drawn SVG shows its nodes, hovering a node
traces its path to the root, "+" expands a node in place (htmx), clicking a node opens its page.

Chromium and the page fixtures are the job page's (tests/runners/test_job_page_browser.py).
"""

from __future__ import annotations

import pytest

from tests.lineage.conftest import chain
from tests.runners.test_job_page_browser import chromium, log_in, page  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_graph_draws_traces_and_expands(page, tiny_versions, team, scientist):  # noqa: F811
    from playwright.sync_api import expect

    refs = tiny_versions(team, 5, scientist)
    chain(refs)
    log_in(page, scientist)
    page.goto(f"/lineage/?node={refs[1].key}&direction=downstream&depth=2")

    nodes = page.locator("[data-lineage-graph] .lineage-node")
    expect(nodes).to_have_count(3)
    box = page.locator(f'[data-node="{refs[3].key}"]').bounding_box()
    root_box = page.locator(f'[data-node="{refs[1].key}"]').bounding_box()
    assert box is not None
    assert root_box is not None
    assert box["x"] > root_box["x"]  # left to right: the root's descendants to its right
    assert box["width"] > 100

    page.hover(f'[data-node="{refs[3].key}"] rect')
    expect(page.locator(".lineage-edge.on-path")).to_have_count(2)
    expect(page.locator(".lineage-node.on-path")).to_have_count(3)

    page.click(f'[data-node="{refs[3].key}"] .lineage-expand')
    expect(nodes).to_have_count(4)
    expect(page.locator(f'[data-node="{refs[4].key}"]')).to_be_visible()

    page.click(f'[data-node="{refs[4].key}"] a >> nth=0')
    page.wait_for_url(f"**/dataset-versions/{refs[4].id}/")
