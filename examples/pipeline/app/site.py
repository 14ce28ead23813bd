"""Renders the site: one page that says which version is deployed."""

import html
import sys


def render(version: str, environment: str) -> str:
    """The index page for `version` deployed to `environment`."""
    return (
        "<!doctype html>\n"
        f"<title>keel example {html.escape(version)}</title>\n"
        f"<p>version {html.escape(version)} "
        f"in {html.escape(environment)}</p>\n"
    )


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: site.py VERSION OUTPUT", file=sys.stderr)
        return 2
    with open(argv[2], "w", encoding="utf-8") as f:
        f.write(render(argv[1], "keel"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
