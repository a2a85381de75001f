"""/metrics is Prometheus text: types before samples, histogram buckets, escaped labels, exact
counters."""

from __future__ import annotations

import pytest
from parcelguard.device.live.health import Metrics


def test_metrics_parse_as_prometheus_text(health_server, http_request, parse_prometheus):
    srv, metrics, _, _ = health_server
    metrics.frame(1.0, 0.004)
    metrics.frame(1.1, None)
    metrics.verdict("damaged")
    metrics.gauges["frame_age_seconds"] = ("gauge", "age", lambda: 0.25)
    code, text = http_request(srv.port, "/metrics")
    assert code == 200
    m = parse_prometheus(text)
    s = m["samples"]
    assert (
        s["parcelguard_frames_total"] == 2
        and s['parcelguard_verdicts_total{verdict="damaged"}'] == 1
    )
    assert (
        s['parcelguard_inference_seconds_bucket{le="0.005"}'] == 1
        and s["parcelguard_inference_seconds_count"] == 1
    )
    assert s['parcelguard_inference_seconds_bucket{le="0.002"}'] == 0
    assert (
        m["types"]["parcelguard_inference_seconds"] == "histogram"
        and s["parcelguard_frame_age_seconds"] == 0.25
    )
    assert s["parcelguard_fps"] == pytest.approx(10.0)


def test_label_values_are_escaped(parse_prometheus):
    m = Metrics()
    evil = 'a"}\nfake_metric 1'
    m.verdict(evil)
    m.verdict("back\\slash")
    text = m.render()
    assert not [ln for ln in text.splitlines() if ln.startswith("fake_metric")]
    s = parse_prometheus(text)["samples"]
    assert s['parcelguard_verdicts_total{verdict="a\\"}\\nfake_metric 1"}'] == 1
    assert s['parcelguard_verdicts_total{verdict="back\\\\slash"}'] == 1


def test_counters_are_written_exactly():
    m = Metrics()
    m.frames = 123_456_789  # %.6g used to print 1.23457e+08
    m.gauges["inf"] = ("gauge", "x", lambda: float("inf"))
    s = m.render()
    assert "parcelguard_frames_total 123456789\n" in s and "parcelguard_inf +Inf\n" in s
