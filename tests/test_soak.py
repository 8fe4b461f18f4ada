"""The soak script, run briefly: mixed traffic on a real `soundpost serve` answers nothing unexpected."""

from __future__ import annotations

import pytest

from bench import soak

pytestmark = pytest.mark.peers  # real servers started by the tests themselves


def test_a_short_soak_answers_every_request_as_expected_and_no_5xx() -> None:
    """Ten seconds of sign-in, presign, upload, confirm and list on 16 connections: zero 5xx, zero surprises."""
    report = soak.run(soak.Options(seconds=10, connections=16, users=4))
    assert report.server_errors == 0, report
    assert report.unexpected == {}, report
    assert set(report.requests) == set(soak.EXPECTED), report  # every kind of request was made
    assert report.requests["sign_in"] >= 16
    assert report.requests["confirm"] > 0 and report.requests["list"] > 0
    assert set(report.rss_kib) == {"start", "middle", "end", "peak"} and report.rss_kib["start"] > 0


def test_the_soak_stops_at_its_request_bound() -> None:
    """--max-requests bounds the run by count as well as by time."""
    report = soak.run(soak.Options(seconds=600, connections=4, users=2, max_requests=40))
    assert sum(report.requests.values()) == 40, report
    assert report.ok, report
