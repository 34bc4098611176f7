"""``backend="auto"`` times its candidates in interleaved rounds, so a slow spell of the
machine does not decide the choice (a fake clock: no timed assertions)."""

from __future__ import annotations

import pytest
import torch

import unetlab
from unetlab.inference import auto


class _Clock:
    """A fake ``perf_counter``: each call of a runner advances it by the runner's cost,
    plus ``spell`` seconds while the global call count is within ``spell_calls``."""

    def __init__(self, spell_calls, spell=1.0):
        self.now, self.calls, self.spell_calls, self.spell = 0.0, 0, spell_calls, spell
        self.order = []

    def runner(self, name, cost, net=None):
        def run(x):
            self.calls += 1
            self.order.append(name)
            self.now += cost + (self.spell if self.calls in self.spell_calls else 0.0)
            return net(x) if net is not None else x
        return run


def test_candidates_are_timed_in_interleaved_rounds(monkeypatch):
    clock = _Clock(spell_calls=range(1, 7))
    monkeypatch.setattr(auto.time, "perf_counter", lambda: clock.now)
    seconds = auto._times({"a": clock.runner("a", 1.0), "b": clock.runner("b", 1.1)},
                          torch.zeros(1), rounds=5)
    # one warm-up each, then one call of each per round, the order rotating
    assert clock.order == ["a", "b"] * 2 + ["b", "a", "a", "b"] * 2
    # the spell fell on the first calls of both; the median of each is its own cost
    assert seconds == pytest.approx({"a": 1.0, "b": 1.1})


@pytest.mark.parametrize("together", [True, False])
def test_the_probe_keeps_the_faster_candidate_through_a_slow_spell(monkeypatch, together):
    torch.manual_seed(0)
    net = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8)).eval()
    clock = _Clock(spell_calls=range(1, 9))  # the first 8 runner calls are slowed down
    monkeypatch.setattr(auto.time, "perf_counter", lambda: clock.now)
    if not together:
        monkeypatch.setattr(auto, "INTERLEAVE_BYTES", 0)
    costs = {("torch", "fp32"): 1.0, ("onnxruntime", "fp32"): 1.1}

    def build(b, p, keep=None):
        with torch.inference_mode():
            return clock.runner(b, costs[(b, p)], net)

    triples = auto.variants(list(costs))
    entry, _ = auto._probe(net, triples, build, (1, 1, 16, 16), [], "cpu")
    if together:  # both see the spell alike: the truly faster one wins
        assert entry["backend"] == "torch"
        assert entry["seconds"] == pytest.approx({"torch_fp32": 1.0, "onnxruntime_fp32": 1.1})
    else:  # one at a time (too much memory for all at once): the spell lands on the first
        assert entry["backend"] == "onnxruntime"  # candidate only, the weakness interleaving ends


def test_a_pinned_precision_is_kept_when_it_disagrees_and_auto_says_why_otherwise():
    """``precision="auto"`` drops candidates whose argmax agrees with fp32 on fewer than
    99.5 % of the pixels, and says so in one line when none is left; for a precision the
    caller pinned (e.g. int8), an agreeing variant still wins over a faster one that
    disagrees, and when none agrees the closest is kept instead of an error."""
    torch.manual_seed(0)
    net = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8)).eval()
    triples = auto.variants([("openvino", "int8")])
    assert [k for _, _, k in triples] == [("first", "last"), ()]
    x = torch.rand(1, 1, 16, 16)
    wrong = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    wrong[..., :8] = True  # the left half of the answers
    clock = _Clock(spell_calls=())

    def flipping(keep):  # "all" flips every pixel, the default the left half
        def run(t):
            y = net(t)
            return -y if keep == () else torch.where(wrong, -y, y)
        return run

    with pytest.raises(ValueError, match="no backend passed the probe .*openvino_int8_all"):
        auto._probe(net, triples, lambda b, p, keep=None: flipping(keep), tuple(x.shape),
                    [x], "cpu")
    entry, _ = auto._probe(net, triples, lambda b, p, keep=None: flipping(keep),
                           tuple(x.shape), [x], "cpu", gate=False)
    assert entry["keep_fp32"] == ["first", "last"]  # the closer of the two
    assert entry["agreement"]["openvino_int8_all"] == 0.0

    # the default variant agrees but is slower: it still wins over the faster one
    def build(b, p, keep=None):
        if keep == ():
            return clock.runner("all", 0.5, lambda t: -net(t))
        return clock.runner("default", 1.0, net)

    monkeypatch_time = pytest.MonkeyPatch()
    monkeypatch_time.setattr(auto.time, "perf_counter", lambda: clock.now)
    try:
        entry, _ = auto._probe(net, triples, build, tuple(x.shape), [x], "cpu", gate=False)
    finally:
        monkeypatch_time.undo()
    assert entry["keep_fp32"] == ["first", "last"]
    # a build that fails is named in the error
    with pytest.raises(ValueError, match="needs calibration"):
        auto._probe(net, triples[:1], lambda *a: (_ for _ in ()).throw(
            ValueError("needs calibration batches")), tuple(x.shape), [x], "cpu")
    with pytest.raises(ValueError, match="keep_fp32"):
        auto.variants(triples, "first")  # a bare string is not a tuple of names
    with pytest.raises(ValueError, match="keep_fp32"):
        auto.variants(triples, ("head",))
    assert auto.variants([("openvino", "int8")], iter(["last"])) == \
        [("openvino", "int8", ("last",))]  # an iterator is read once


def test_auto_with_calibration_tries_the_reduced_precisions_by_default(monkeypatch):
    """optimize_for_inference(model, backend="auto", calibration=...) as the docs show
    it: the default precision was fp32, so the batches were ignored and int8 never
    tried; with calibration it is now "auto" (without: fp32, as before)."""
    from unetlab.inference import optimize_for_inference

    seen = []
    monkeypatch.setattr(auto, "choose", lambda model, **kw: seen.append(kw["precision"]))
    net = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8)).eval()
    optimize_for_inference(net, backend="auto", calibration=[torch.rand(1, 1, 16, 16)])
    optimize_for_inference(net, backend="auto")
    optimize_for_inference(net, backend="auto", precision="fp32",
                           calibration=[torch.rand(1, 1, 16, 16)])
    assert seen == ["auto", "fp32", "fp32"]
