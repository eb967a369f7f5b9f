"""The adaptive learning rate, replayed on hand-made discarded_cnt histories, epoch by epoch."""
import json

import pytest

from eps_resnet.training.recipe import RECIPES
from eps_resnet.training.runfolder import stat_history
from eps_resnet.training.schedules import AdaptiveRestart, epsilon_schedule, replay, value_at

BASE = RECIPES["cifar"].lr_points("standard")  # 0.1, x0.1 after 82 and 123, 2e-4 after 300
FAST = RECIPES["cifar"].lr_points("adaptive")  # 0.1, x0.1 after 41 and 61, 2e-4 after 150


def expected(*spans):
    """[(first_epoch, last_epoch, lr), ...] -> the lr of every epoch from 1."""
    out = []
    for first, last, lr in spans:
        assert first == len(out) + 1, "spans must be contiguous"
        out += [lr] * (last - first + 1)
    return out


def adaptive():
    return AdaptiveRestart(BASE, FAST, threshold=1, last_k=1)


def test_no_discard_follows_the_standard_schedule():
    lrs = replay(adaptive(), [0.0] * 310, 310)
    assert lrs == expected((1, 82, 0.1), (83, 123, 0.01), (124, 300, 0.001), (301, 310, 0.0002))


def test_standard_schedule_ignores_discards():
    lrs = replay(AdaptiveRestart(BASE), [float(i) for i in range(130)], 130)
    assert lrs == expected((1, 82, 0.1), (83, 123, 0.01), (124, 130, 0.001))


def test_one_rise_restarts_the_fast_schedule_from_the_next_epoch():
    history = [0, 0, 0, 0, 1, 1] + [1] * 200  # discarded_cnt rose by 1 during epoch 5
    rule = adaptive()
    lrs = replay(rule, history, 160)
    assert rule.restarts == [5]
    # shifted schedule: 0.1 after epoch 5, 0.01 after 46, 0.001 after 66, 2e-4 after 155
    assert lrs == expected((1, 46, 0.1), (47, 66, 0.01), (67, 155, 0.001), (156, 160, 0.0002))


def test_restart_late_in_the_schedule_raises_the_rate_again():
    history = [0.0] * 89 + [2.0] * 100  # rise during epoch 90, when lr is 0.01
    rule = adaptive()
    lrs = replay(rule, history, 140)
    assert rule.restarts == [90]
    assert lrs == expected((1, 82, 0.1), (83, 90, 0.01), (91, 131, 0.1), (132, 140, 0.01))


def test_threshold_is_inclusive_and_fractional_averages_count():
    # Moving averages: rises of 0.99 never restart, a rise of exactly 1.0 does.
    rule = adaptive()
    replay(rule, [0.0, 0.99, 1.98, 2.97, 3.96, 3.96], 6)
    assert rule.restarts == []
    history = [0.5, 0.5, 1.5, 1.5]
    rule = adaptive()
    replay(rule, history, 4)
    assert rule.restarts == [3]


def test_first_epoch_never_restarts():
    rule = adaptive()
    replay(rule, [7.0, 7.0, 7.0], 3)  # only one value after epoch 1: nothing to compare with
    assert rule.restarts == []


def test_consecutive_rises_restart_every_epoch():
    rule = adaptive()
    lrs = replay(rule, [0, 1, 2, 3, 3, 3], 6)
    assert rule.restarts == [2, 3, 4]
    assert lrs == [0.1] * 6


def test_look_back_of_two_epochs():
    rule = AdaptiveRestart(BASE, FAST, threshold=1, last_k=2)
    # window of 3 values; at least 2 epochs between restarts
    replay(rule, [0, 0, 0.5, 1.0, 1.0, 2.0, 3.0, 4.0], 8)
    assert rule.restarts == [4, 6, 8]


def test_a_drop_never_restarts():
    rule = adaptive()
    replay(rule, [3, 2, 1, 0, 0], 5)
    assert rule.restarts == []


def test_svhn_schedule_starts_after_epoch_one():
    rule = AdaptiveRestart(RECIPES["svhn"].lr_points("standard"), RECIPES["svhn"].lr_points("adaptive"))
    history = [0.0] * 11 + [1.0] * 50  # rise during epoch 12
    lrs = replay(rule, history, 40)
    assert rule.restarts == [12]
    # before: 0.1; after epoch 12: 0.1, x0.1 after 12+10 = 22 and 12+14 = 26, 1e-4 after 37
    assert lrs == expected((1, 22, 0.1), (23, 26, 0.01), (27, 37, 0.001), (38, 40, 0.0001))


@pytest.mark.parametrize("split", [1, 5, 6, 47, 90])
def test_replaying_a_prefix_rebuilds_the_same_state(split):
    """What a resumed run does: rebuild the rule from the first epochs, then go on."""
    history = [0.0] * 4 + [1.0] * 40 + [2.5] * 60 + [2.5] * 50
    whole = adaptive()
    lrs = replay(whole, history, 150)
    resumed = adaptive()
    # callbacks.LearningRateSetter after `split` epochs: replay the history it has, set the value
    replay(resumed, history[:split], split)
    rest = []
    for epoch in range(split + 1, 151):  # then one rule step at the end of each epoch
        rest.append(resumed.value)
        resumed.after_epoch(epoch, history[:epoch])
    assert lrs[split:] == rest
    assert resumed.restarts == whole.restarts


def test_epsilon_schedule_and_value_at():
    assert epsilon_schedule(2.5) == [(0, 2.5)]
    pts = epsilon_schedule(2.5, 150)
    assert value_at(pts, 0) == 0.0 and value_at(pts, 149) == 0.0 and value_at(pts, 150) == 2.5
    assert value_at([(1, 0.1)], 0) is None


def test_stat_history_reads_stats_json(tmp_path):
    stats = [{"epoch_num": e, "global_step": 10 * e, "discarded_cnt": e / 2} for e in range(1, 6)]
    stats.insert(2, {"epoch_num": 2, "global_step": 25})  # an entry without the metric
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    assert stat_history(str(tmp_path / "stats.json"), "discarded_cnt", 4) == [0.5, 1.0, 1.5]
    assert stat_history(str(tmp_path / "missing.json"), "discarded_cnt", 4) == []
