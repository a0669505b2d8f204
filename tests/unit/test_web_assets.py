"""The web UI's files (services/web/weir_web/static) keep the promises of docs/ui.md that a
reading can check: no HTML parsing of data, nothing from another site, no inline script or
style (the CSP `default-src 'self'` would refuse them), every imported module present."""

from __future__ import annotations

import re
from pathlib import Path

from weir_proto.status import (
    TERMINAL_TASK_STATUSES,
    UNENDED_FLOW_STATUSES,
    FlowStatus,
    TaskStatus,
)
from weir_web.app import STATIC_DIR

HTML_SINKS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
    r"createContextualFragment|DOMParser|srcdoc"
)
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def assets(suffix: str) -> list[Path]:
    found = sorted(STATIC_DIR.rglob(f"*{suffix}"))
    assert found, f"no {suffix} files under {STATIC_DIR}"
    return found


def test_no_script_parses_data_as_html() -> None:
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in assets(".js")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if HTML_SINKS.search(line)
    ]
    assert not offenders, offenders


def test_nothing_is_loaded_from_another_site() -> None:
    for path in [*assets(".js"), *assets(".css"), *assets(".html")]:
        text = path.read_text().replace(SVG_NAMESPACE, "")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), path.name
        assert "@import" not in text, path.name


def test_the_page_has_no_inline_script_or_style() -> None:
    page = (STATIC_DIR / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts and all(" src=" in s for s in scripts), scripts
    assert "<style" not in page and not re.search(r"\s(style|on[a-z]+)=", page)
    for path in assets(".js"):
        assert not re.search(r"setAttribute\(\s*[\"'](style|on\w+)", path.read_text()), path.name


def test_every_imported_module_exists() -> None:
    for path in assets(".js"):
        for target in re.findall(r"from \"(\./[^\"]+)\"", path.read_text()):
            assert (path.parent / target).is_file(), f"{path.name} imports missing {target}"


def _js_strings(model: str, name: str, opening: str, closing: str) -> list[str]:
    found = re.search(rf"const {name} = {re.escape(opening)}(.*?){re.escape(closing)}", model, re.S)
    assert found is not None, f"model.js declares no {name}"
    return re.findall(r'"([a-z_]+)"', found.group(1))


def test_the_ui_folds_statuses_with_the_proto_status_sets() -> None:
    """model.js folds a flow's events in the browser: its status sets and the statuses its
    events lead to are the enums' (weir_proto.status), not a list of its own."""
    model = (STATIC_DIR / "js" / "model.js").read_text()
    terminal = _js_strings(model, "TERMINAL_TASK", "new Set([", "])")
    assert set(terminal) == {str(s) for s in TERMINAL_TASK_STATUSES}
    active = _js_strings(model, "ACTIVE_FLOW", "new Set([", "])")
    assert set(active) == {str(s) for s in UNENDED_FLOW_STATUSES}
    task_after = re.findall(r'(?:setTask\([^,]+, |[tT]askTo\()"([a-z_]+)"', model)
    assert task_after and set(task_after) <= {str(s) for s in TaskStatus}, task_after
    flow_after = re.findall(r'(?:setFlow|flowTo)\("([a-z_]+)"', model)
    assert flow_after and set(flow_after) <= {str(s) for s in FlowStatus}, flow_after
