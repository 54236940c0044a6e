"""engines/loop.py's rules, pinned with a fake engine: scripted step/evaluate/shuffle/fit
callables and a log of the calls the loop makes (no torch, no training)."""

import math
import threading
from types import SimpleNamespace

import pytest

from dropbench.engines import loop
from dropbench.engines.loop import Cancelled, diverged_reason

NAN, INF = float("nan"), float("inf")


class Fake:
    """An engine of `members` runs whose step returns loss(epoch, rows, member): it counts the
    epochs by the steps it is asked for, and logs every call."""

    def __init__(self, members=2, epochs=6, eval_every=2, batch_size=None, n=10, loss=None, cancel_after=None):
        self.cfgs = [SimpleNamespace(epochs=epochs, eval_every=eval_every, batch_size=batch_size, run_id=f"r{i}")
                     for i in range(members)]
        self.n, self.members = n, members
        self.loss = loss or (lambda epoch, rows, i: 1.0 / epoch + i)
        self.log: list[tuple] = []
        self.epoch = 0
        self.cancel = threading.Event()
        self.cancel_after = cancel_after

    def step(self, rows, objective):
        if rows is None or rows[0] == 0:
            self.epoch += 1
        self.log.append(("step", self.epoch, rows, objective))
        if self.cancel_after is not None and self.epoch == self.cancel_after:
            self.cancel.set()
        return [self.loss(self.epoch, rows, i) for i in range(self.members)]

    def shuffle(self):
        self.log.append(("shuffle", self.epoch + 1))

    def evaluate(self):
        self.log.append(("evaluate", self.epoch))
        return [(0.1 * self.epoch, 0.2 * self.epoch + i, None, None) for i in range(self.members)]

    def fit(self):
        self.log.append(("fit",))
        return [[(0.0, float(i)), (1.0, float(i))] for i in range(self.members)]

    def train(self):
        return loop.train(self.cfgs, self.n, [2.0] * self.members, self.step, self.evaluate, self.shuffle, self.fit,
                          self.cancel)

    def calls(self, kind):
        return [c for c in self.log if c[0] == kind]


def test_evaluated_after_every_eval_every_th_epoch_and_the_last():
    f = Fake(epochs=7, eval_every=3)
    results = f.train()
    assert [e for _, e in f.calls("evaluate")] == [3, 6, 7]
    for i, r in enumerate(results):
        assert [row[0] for row in r.curve] == [3, 6, 7]
        assert r.curve[-1] == (7, 0.1 * 7, 0.2 * 7 + i, 1.0 / 7 + i)
        assert r.scores[-1][:2] == (math.sqrt(0.7) * 2.0, math.sqrt(0.2 * 7 + i) * 2.0)  # RMSE in y_std units
    # the objective is asked for exactly on the evaluated epochs (an engine may skip penalties otherwise)
    assert [e for _, e, _, obj in f.calls("step") if obj] == [3, 6, 7]
    assert [c[0] for c in f.log[-2:]] == ["evaluate", "fit"] and all(r.status == "ok" for r in results)


def test_a_member_diverging_at_epoch_k_fails_there_and_the_others_go_on():
    f = Fake(members=3, epochs=6, eval_every=2, loss=lambda e, rows, i: INF if i == 1 and e >= 3 else 1.0)
    a, b, c = f.train()
    assert b.status == "failed" and b.reason == diverged_reason(3, INF)
    assert b.reason.startswith("diverged at epoch 3 (training loss inf)")
    assert [row[0] for row in b.curve] == [2] and b.fit == []  # nothing recorded from epoch 3 on
    for r in (a, c):
        assert r.status == "ok" and [row[0] for row in r.curve] == [2, 4, 6] and len(r.fit) == 2
    assert len(f.calls("step")) == 6


def test_a_member_diverging_mid_epoch_fails_with_that_value_and_epoch():
    def loss(e, rows, i):
        return NAN if (i == 0 and e == 2 and rows == (4, 8)) else 1.0

    f = Fake(members=2, epochs=3, eval_every=1, batch_size=4, loss=loss)
    a, b = f.train()
    assert a.status == "failed" and a.reason == diverged_reason(2, NAN) and [row[0] for row in a.curve] == [1]
    assert b.status == "ok" and [row[0] for row in b.curve] == [1, 2, 3] and b.curve[1][3] == 1.0


def test_training_stops_once_every_member_has_diverged():
    f = Fake(members=2, epochs=10, eval_every=1, loss=lambda e, rows, i: NAN if e >= 2 + i else 1.0)
    results = f.train()
    assert [r.reason for r in results] == [diverged_reason(2, NAN), diverged_reason(3, NAN)]
    assert len(f.calls("step")) == 3 and [e for _, e in f.calls("evaluate")] == [1, 2]
    assert f.calls("fit") == []  # no member left to draw


def test_a_mini_batch_epoch_stops_at_the_step_where_the_last_member_diverges():
    f = Fake(members=1, epochs=4, batch_size=3, n=10, loss=lambda e, rows, i: NAN if rows == (3, 6) else 1.0)
    (r,) = f.train()
    assert r.reason == diverged_reason(1, NAN)
    assert [c[2] for c in f.calls("step")] == [(0, 3), (3, 6)]


def test_train_loss_is_the_rows_weighted_mean_of_the_batches_objectives():
    # n=10 in batches of 4: rows 4, 4, 2. The plain mean of the three losses would be 4/3.
    losses = {(0, 4): 1.0, (4, 8): 2.0, (8, 10): 1.0 / 3}
    f = Fake(members=2, epochs=2, eval_every=1, batch_size=4, n=10, loss=lambda e, rows, i: losses[rows] * (i + 1))
    a, b = f.train()
    want = (1.0 * 4 + 2.0 * 4 + (1.0 / 3) * 2) / 10
    assert [row[3] for row in a.curve] == [want, want]
    assert [row[3] for row in b.curve] == [(2.0 * 4 + 4.0 * 4 + (2.0 / 3) * 2) / 10] * 2
    assert want != sum(losses.values()) / 3


def test_at_full_batch_train_loss_is_the_one_steps_and_nothing_is_shuffled():
    f = Fake(members=2, epochs=3, eval_every=1, loss=lambda e, rows, i: 0.5 * e + i)
    a, b = f.train()
    assert [row[3] for row in a.curve] == [0.5, 1.0, 1.5] and [row[3] for row in b.curve] == [1.5, 2.0, 2.5]
    assert f.calls("shuffle") == [] and {c[2] for c in f.calls("step")} == {None}


def test_the_order_is_drawn_once_per_epoch_before_its_first_step():
    f = Fake(members=2, epochs=3, eval_every=3, batch_size=4, n=10)
    f.train()
    want: list[tuple] = []
    for e in (1, 2, 3):
        want += [("shuffle", e), *(("step", e, rows, e == 3) for rows in [(0, 4), (4, 8), (8, 10)])]
    assert [c for c in f.log if c[0] in ("shuffle", "step")] == want


def test_cancel_stops_at_the_next_epochs_start():
    f = Fake(epochs=5, cancel_after=2)
    with pytest.raises(Cancelled):
        f.train()
    assert len(f.calls("step")) == 2


def test_a_non_finite_evaluation_fails_the_run_when_it_settles():
    f = Fake(members=2, epochs=4, eval_every=2)
    good = f.evaluate
    f.evaluate = lambda: [(tr, NAN if (i == 0 and f.epoch == 4) else te, mc, ll)
                          for i, (tr, te, mc, ll) in enumerate(good())]
    a, b = f.train()
    assert a.status == "failed" and "evaluated after it" in a.reason and [row[0] for row in a.curve] == [2]
    assert a.fit == [] and b.status == "ok" and len(b.fit) == 2


def test_seconds_since_the_engines_start_are_shared_by_the_members():
    """The clock is read once at the end (and at the start when no t0 is given): 8 s / 4 members."""
    f = Fake(members=4, epochs=2)
    ticks = iter([18.0])
    results = loop.train(f.cfgs, f.n, [1.0] * 4, f.step, f.evaluate, t0=10.0, clock=lambda: next(ticks))
    assert [r.seconds for r in results] == [2.0] * 4
    f, ticks = Fake(members=2, epochs=2), iter([100.0, 103.0])
    results = loop.train(f.cfgs, f.n, [1.0] * 2, f.step, f.evaluate, clock=lambda: next(ticks))
    assert [r.seconds for r in results] == [1.5, 1.5]
