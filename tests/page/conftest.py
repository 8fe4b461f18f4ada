"""The page's tests share one headless Chromium per module, the app it loads, and alice signed in on it."""

from tests.support.page import (  # noqa: F401  (fixtures, requested by name)
    alice_page,
    browser_fixture,
    chromium_args_fixture,
    page_fixture,
    site_fixture,
    site_settings_fixture,
    stored_fixture,
)
