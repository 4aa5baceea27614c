"""Calibration ranges gathered batch by batch: the extremes of one run on every sample at once (up to the
float kernels' rounding, which depends on the batch size), with no more than one batch of values held."""
import pytest
import torch

from upstream_files import small_cfg, trained_like
from snncompile.frontend import export
from snncompile.passes.calibrate import batches, value_ranges
from snncompile.sim import run_graph
from snncompile.sim.dataset import graph_feeds


@pytest.mark.parametrize("dvs", [False, True])
def test_batched_extremes_equal_one_run_on_all_samples(dvs):
    cfg = small_cfg(in_channels=2, dvs_mode=True) if dvs else small_cfg()
    graph = export(trained_like(cfg))
    shape = (7, cfg.time_steps, 2, 16, 16) if dvs else (7, 3, 16, 16)
    x = torch.poisson(torch.full(shape, 0.3)) if dvs else torch.randn(shape)
    feeds = graph_feeds(graph, x)
    every = run_graph(graph, feeds, keep="all")
    ranges = value_ranges(graph, feeds, batch=3)   # 3 + 3 + 1 samples
    assert set(ranges.high) == {n for n, v in every.items() if v.numel()}
    close = dict(rel=1e-6, abs=1e-6)
    for name, value in every.items():
        assert ranges.high[name] == pytest.approx(float(value.max()), **close), name
        assert ranges.low[name] == pytest.approx(float(value.min()), **close), name
        assert ranges.peak[name] == pytest.approx(float(value.double().abs().max()), **close), name


def test_batches_cut_static_feeds_on_samples_and_streams_on_their_second_axis():
    graph = export(trained_like(small_cfg(in_channels=2, dvs_mode=True)))
    (name,) = graph.inputs()
    stream = torch.arange(4 * 5 * 2 * 16 * 16, dtype=torch.float32).reshape(4, 5, 2, 16, 16)
    parts = list(batches(graph, {name: stream}, 2))
    assert [p[name].shape[1] for p in parts] == [2, 2, 1]
    assert torch.equal(torch.cat([p[name] for p in parts], dim=1), stream)


def test_value_ranges_holds_one_batch_at_a_time(monkeypatch):
    graph = export(trained_like(small_cfg()))
    seen = []
    import snncompile.passes.calibrate as calibrate
    real = calibrate.run_graph

    def recording(g, feeds, **kw):
        seen.append((kw.get("keep", "outputs"), {n: t.shape[0] for n, t in feeds.items()}))
        return real(g, feeds, **kw)

    monkeypatch.setattr(calibrate, "run_graph", recording)
    value_ranges(graph, graph_feeds(graph, torch.randn(5, 3, 16, 16)), batch=2)
    assert [keep for keep, _ in seen] == ["outputs"] * 3
    assert [sizes for _, sizes in seen] == [{"input": 2}, {"input": 2}, {"input": 1}]


# -- where calibration samples come from ------------------------------------------------------------

from snncompile.config import DataConfig  # noqa: E402
from snncompile.data import DataError  # noqa: E402
from snncompile.data.calibration import (SYNTHETIC_EVENT_RATE, calibration_samples, file_samples,  # noqa: E402
                                         synthetic_samples)


def test_synthetic_images_follow_the_data_sets_normalisation():
    cfg = small_cfg(img_size=32)
    found = synthetic_samples(cfg, "cifar10", 4000)
    assert found.inputs.shape == (4000, 3, 32, 32)
    pixels = found.inputs * torch.tensor([0.2470, 0.2435, 0.2616])[:, None, None] + \
        torch.tensor([0.4914, 0.4822, 0.4465])[:, None, None]
    assert 0 <= float(pixels.min()) and float(pixels.max()) <= 1 + 1e-6
    assert float(pixels.mean()) == pytest.approx(0.5, abs=1e-3) and "0.4914" in found.source


def test_synthetic_event_frames_are_poisson_counts():
    cfg = small_cfg(in_channels=2, dvs_mode=True)
    found = synthetic_samples(cfg, "cifar10-dvs", 50)
    assert found.inputs.shape == (50, cfg.time_steps, 2, 16, 16)
    assert torch.equal(found.inputs, found.inputs.round()) and float(found.inputs.min()) == 0
    assert float(found.inputs.mean()) == pytest.approx(SYNTHETIC_EVENT_RATE, rel=0.05)


def test_auto_falls_back_to_synthetic_without_the_data_set_and_train_refuses(tmp_path):
    cfg, data = small_cfg(img_size=32), DataConfig(dataset="cifar10", root=str(tmp_path))
    found = calibration_samples("auto", data, cfg, 6)
    assert len(found) == 6 and found.source.startswith("synthetic: 6 uniform images")
    assert "training set is not at hand" in found.source
    with pytest.raises(DataError):
        calibration_samples("train", data, cfg, 6)
    digits = calibration_samples("auto", DataConfig(dataset="digits"), small_cfg(in_channels=1), 6)
    assert digits.source == "digits train (6 samples)" and digits.inputs.shape == (6, 1, 16, 16)


def test_tensor_files_npy_and_pt(tmp_path):
    cfg = small_cfg()
    x = torch.rand(5, 3, 16, 16)
    torch.save(x, tmp_path / "x.pt")
    assert torch.equal(file_samples(tmp_path / "x.pt", cfg, 3).inputs, x[:3])
    assert torch.equal(calibration_samples(str(tmp_path / "x.pt"), DataConfig(), cfg, 9).inputs, x)
    with pytest.raises(DataError, match="none of auto, train, synthetic nor a .npy/.pt file"):
        calibration_samples("somewhere.txt", DataConfig(), cfg, 9)
    with pytest.raises(DataError, match="does not exist"):
        calibration_samples(str(tmp_path / "missing.npy"), DataConfig(), cfg, 9)


# -- recording only what the passes read; the calibration source's effect in verify ------------------------

from snncompile.passes import PIPELINES, PassContext, verify_pipeline  # noqa: E402
from snncompile.passes.calibrate import Ranges  # noqa: E402


def test_value_ranges_of_some_nodes_runs_only_what_they_read(monkeypatch):
    graph = export(trained_like(small_cfg()))
    feeds = graph_feeds(graph, torch.randn(3, 3, 16, 16))
    every = value_ranges(graph, feeds)
    wanted = {"patch_embed.proj_lif", "block.0.attn.q_lif"}
    ran = []
    import snncompile.passes.calibrate as calibrate
    real = calibrate.run_graph
    monkeypatch.setattr(calibrate, "run_graph", lambda g, f, **kw: ran.append(set(g.nodes)) or real(g, f, **kw))
    some = value_ranges(graph, feeds, nodes=wanted)
    assert set(some.high) == wanted
    assert all(some.high[n] == every.high[n] and some.low[n] == every.low[n] for n in wanted)
    (nodes,) = ran
    assert wanted <= nodes and "head" not in nodes and len(nodes) < len(graph.nodes)


def test_ranges_fold_values_into_running_extremes():
    ranges = Ranges()
    ranges.observe("a", torch.tensor([1.0, -2.0]))
    ranges.observe("a", torch.tensor([[0.5, 3.0]]))
    ranges.observe("b", torch.tensor([], dtype=torch.float32))
    assert (ranges.high, ranges.low, ranges.peak) == ({"a": 3.0}, {"a": -2.0}, {"a": 3.0})


def test_verify_reports_the_calibration_source_and_its_effect():
    """Event counts calibrated on sparse frames quantise the input in fewer bits than frames as dense as the
    test data (which then saturate), so the quantised graph agrees less with the float graph; verify says
    which source it ran."""
    cfg = small_cfg(in_channels=2, dvs_mode=True)
    graph = export(trained_like(cfg))
    draw = lambda rate, seed: torch.poisson(torch.full((2, cfg.time_steps, 2, 16, 16), rate),  # noqa: E731
                                            generator=torch.Generator().manual_seed(seed))
    feeds = graph_feeds(graph, draw(3.0, 0))
    found = {}
    for name, rate in (("sparse", 0.05), ("dense", 3.0)):
        ctx = PassContext(calibration=graph_feeds(graph, draw(rate, 1)))
        report = verify_pipeline(graph, PIPELINES["loihi"], ctx, feeds, calibration=name)
        quantize = next(e for e in report.graph.history if e.name == "quantize")
        stage = next(s for s in report.stages if s.pass_name == "quantize (float view)")
        found[name] = (report.calibration, quantize.options["inputs"]["input"]["bits"],
                       min(n.cumulative.agreement for n in stage.nodes if n.cumulative and n.cumulative.agreement
                           is not None))
    assert found["sparse"][0] == "sparse" and found["dense"][0] == "dense"
    assert found["sparse"][1] < found["dense"][1]
    assert found["sparse"][2] < found["dense"][2]
