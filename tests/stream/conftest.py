from tests._browser import browser, page  # noqa: F401  (the real chromium fixtures)
