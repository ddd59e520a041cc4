"""The ROS-free presence state machine (IDLE / TRACKING / LOST and back)."""

from __future__ import annotations

import math

import pytest

from siam_tracking_ros.core.presence import LostPolicy, PresenceStateMachine, TargetState

T, L, IDLE = TargetState.TRACKING, TargetState.LOST, TargetState.IDLE


def run(machine: PresenceStateMachine, scores: list[float]) -> list[TargetState]:
    return [machine.update(s) for s in scores]


def test_defaults_and_idle_until_started() -> None:
    policy = LostPolicy()
    assert (policy.score_threshold, policy.lost_frames, policy.found_frames, policy.lost_search_scale,
            policy.found_threshold) == (0.5, 5, 2, 2.0, 0.7)
    machine = PresenceStateMachine()
    assert machine.state == IDLE and run(machine, [0.9, 0.1]) == [IDLE, IDLE]
    assert machine.frame_count == 0 and machine.frames_since_seen == 0


def test_lost_after_lost_frames_consecutive_low_scores() -> None:
    machine = PresenceStateMachine(LostPolicy(score_threshold=0.5, lost_frames=3, found_frames=2))
    machine.start()
    assert run(machine, [0.9, 0.2, 0.2, 0.9, 0.2, 0.2]) == [T] * 6  # a high score breaks the run
    assert machine.frames_since_seen == 2 and not machine.just_lost
    assert machine.update(0.1) == L and machine.just_lost and machine.frames_since_seen == 3
    assert machine.update(0.1) == L and not machine.just_lost and machine.frames_since_seen == 4


def test_found_again_after_found_frames_consecutive_high_scores() -> None:
    machine = PresenceStateMachine(LostPolicy(score_threshold=0.5, lost_frames=1, found_frames=3,
                                              found_threshold=0.5))
    machine.start()
    assert machine.update(0.0) == L
    assert run(machine, [0.8, 0.8, 0.1, 0.8, 0.8]) == [L] * 5  # a low score restarts the count
    assert machine.seen and machine.frames_since_seen == 0
    assert machine.update(0.5) == T and machine.just_found  # the threshold itself counts as seen
    assert machine.update(0.9) == T and not machine.just_found


def test_found_threshold_holds_lost_until_the_score_clears_it() -> None:
    machine = PresenceStateMachine(LostPolicy(score_threshold=0.5, lost_frames=1, found_frames=2,
                                              found_threshold=0.8))
    machine.start()
    assert machine.update(0.6) == T  # TRACKING needs only score_threshold
    assert machine.update(0.4) == L
    assert run(machine, [0.7, 0.7, 0.7]) == [L] * 3  # look-alikes between the two thresholds
    assert not machine.seen and machine.frames_since_seen == 4
    assert run(machine, [0.8, 0.9]) == [L, T]
    assert machine.update(0.6) == T  # back to the LOST threshold once found


def test_found_threshold_below_score_threshold_changes_nothing() -> None:
    policy = LostPolicy(score_threshold=0.5, found_threshold=0.2)
    assert policy.seen_threshold(lost=True) == policy.seen_threshold(lost=False) == 0.5
    with pytest.raises(ValueError, match="found_threshold"):
        LostPolicy(found_threshold=math.nan)


def test_non_finite_scores_count_as_not_seen() -> None:
    machine = PresenceStateMachine(LostPolicy(lost_frames=2))
    machine.start()
    assert run(machine, [math.nan, math.inf * -1]) == [T, L]
    assert not machine.seen


def test_start_and_reset_clear_counters() -> None:
    machine = PresenceStateMachine(LostPolicy(lost_frames=1))
    machine.start()
    machine.update(0.0)
    assert machine.state == L and machine.frame_count == 1
    machine.start()
    assert (machine.state, machine.frame_count, machine.frames_since_seen) == (T, 0, 0)
    assert not (machine.just_lost or machine.just_found)
    machine.reset()
    assert machine.state == IDLE


def test_lose_forces_lost_and_found_frames_bring_it_back() -> None:
    machine = PresenceStateMachine(LostPolicy(found_frames=2))
    machine.lose()
    assert machine.state == IDLE  # nothing to lose
    machine.start()
    machine.lose()
    assert machine.state == L and machine.just_lost
    assert run(machine, [0.9, 0.9]) == [L, T]


def test_policy_changes_apply_at_the_next_frame() -> None:
    policy = LostPolicy(score_threshold=0.5, lost_frames=10)
    machine = PresenceStateMachine(policy)
    machine.start()
    run(machine, [0.1, 0.1])
    policy.lost_frames = 3
    assert machine.update(0.1) == L


@pytest.mark.parametrize("values", [dict(score_threshold=math.nan), dict(lost_frames=0),
                                    dict(found_frames=0), dict(lost_search_scale=0.5)])
def test_bad_policies_are_refused(values: dict) -> None:
    with pytest.raises(ValueError):
        LostPolicy(**values)
