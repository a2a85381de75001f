"""The station's fusion rules on hand-made view events (no video, no threads)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from parcelguard.device.config.daemon import StationConfig
from parcelguard.device.inspection.station import Station
from parcelguard.device.testing import make_event

POS = {"top": 0.0, "side": 0.5}  # the side view sees a package 1 s later at 0.5 m/s


def station(**cfg):
    out: list = []
    st = Station(
        StationConfig(enabled=True, tolerance_s=0.2, wait_s=0.5, **cfg),
        POS,
        0.5,
        2.0,
        ("damaged", "ok"),
        out.append,
        "dev",
        "run",
    )
    return st, out


def view(cam: str, t_ref: float, score: float | None, seq: int = 1):
    """A view of the package that reached the reference at ``t_ref``."""
    ev = make_event(seq, run_token=cam, score=score)
    tc = t_ref + POS[cam] / 0.5
    return replace(ev, t_center=tc, t_enter=tc - 0.1, t_exit=tc + 0.1, t_decision=tc + 0.2)


@pytest.mark.parametrize(
    ("fuse", "scores", "verdict", "score"),
    [
        ("any", (0.1, 0.9), "damaged", 0.9),
        ("mean", (0.1, 0.9), "damaged", 0.5),  # 0.5 reaches the package threshold 0.5
        ("mean", (0.1, 0.7), "ok", 0.4),
        ("max", (0.1, 0.7), "damaged", 0.7),
        ("any", (None, 0.2), "reject_uninspected", 0.2),  # a view could not look: fail safe
        ("any", (None, 0.9), "damaged", 0.9),
    ],
)
def test_fusion_rules(fuse, scores, verdict, score):
    st, out = station(fuse=fuse)
    st.add("top", view("top", 10.0, scores[0]))
    assert out == [], "waits for the side view"
    st.add("side", view("side", 10.1, scores[1]))
    (ev,) = out
    assert ev.verdict == verdict and ev.score == pytest.approx(score)
    assert [v["camera"] for v in ev.views] == ["top", "side"] and ev.views_missing is None
    assert ev.reject_deadline == pytest.approx(10.0 + 2.0 / 0.5)


def test_views_are_matched_by_position_not_order():
    st, out = station()
    st.add("top", view("top", 10.0, 0.1, 1))
    st.add("top", view("top", 11.0, 0.1, 2))
    st.add("side", view("side", 11.05, 0.9, 2))  # the second package's side view
    assert [e.verdict for e in out] == ["damaged"] and out[0].views[0]["t_center"] == 11.0


def test_missing_view_expires_by_its_clock_and_a_late_view_is_not_a_package():
    st, out = station(missing="reject")
    st.add("top", view("top", 10.0, 0.1))
    st.advance("side", 11.0 + 0.2 + 0.5)  # exactly at its deadline: still waiting
    assert out == []
    st.advance("side", 11.8)
    (ev,) = out
    assert ev.verdict == "reject_uninspected" and ev.views_missing == ["side"]
    st.add("side", view("side", 10.05, 0.9))
    st.flush()
    assert len(out) == 1 and st.late_views == 1 and st.missing == {"top": 0, "side": 1}


def test_a_lagging_camera_keeps_its_views_and_a_down_one_is_missing_by_the_others_clock():
    st, out = station()
    st.add("top", view("top", 10.0, 0.9, 1))
    st.advance("side", 10.5)
    st.advance("top", 30.0)  # the side loop lags far behind: its own clock decides
    st.add("side", view("side", 10.1, 0.1, 1))
    assert [(e.verdict, e.views_missing) for e in out] == [("damaged", None)]
    st.add("top", view("top", 40.0, 0.1, 2))
    st.set_down("side", True)  # camera down: the top camera's clock (30.0) is before 41.7
    assert len(out) == 1
    st.advance("top", 41.8)
    assert [(e.verdict, e.views_missing) for e in out[1:]] == [("ok", ["side"])]
