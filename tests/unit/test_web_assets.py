"""The web UI's files (services/web/weir_web/static) keep the promises of docs/ui.md that a
reading can check: no HTML parsing of data, nothing from another site, no inline script or
style (the CSP `default-src 'self'` would refuse them), every imported module present."""

from __future__ import annotations

import re
from pathlib import Path

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
