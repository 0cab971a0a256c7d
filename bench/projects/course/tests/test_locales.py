"""One test per locale message catalogue, repeated to the count the benchmark asks for
(DEVLOOP_BENCH_TESTS, total tests of the project; default 20), so that the cost of
collection and selection can be measured against the number of tests."""

import os

import pytest

OTHER_TESTS = 7
LOCALES = ["en", "nl", "de", "fr", "es", "it", "pt", "pl", "sv", "da", "fi", "cs"]
COUNT = max(1, int(os.environ.get("DEVLOOP_BENCH_TESTS", "20")) - OTHER_TESTS)


@pytest.mark.parametrize("i", range(COUNT))
def test_message_catalogue_names_its_locale(cluster, i):
    locale = LOCALES[i % len(LOCALES)]
    data = cluster.get("ConfigMap", f"course-messages-{locale}")["data"]
    assert f"({locale})" in data["messages.properties"]
