"""The browser tests' fixtures (tests/fixtures/browser.py): Chromium and a fresh page per test."""

from tests.fixtures.browser import browser, page  # noqa: F401  (fixtures, used by name)
