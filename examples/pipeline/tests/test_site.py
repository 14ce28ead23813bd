from app.site import render


def test_page_names_version_and_environment():
    page = render("1.2.3", "staging")
    assert "version 1.2.3 in staging" in page


def test_page_escapes_html():
    assert "&lt;b&gt;" in render("<b>", "x")
