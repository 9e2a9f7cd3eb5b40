"""Settings for ``bench/record_page.py`` only: the product's settings, plus a URLconf
that adds the one-query baseline view. Never used by the product."""

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.record_page_urls"
