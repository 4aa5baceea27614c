"""Pricing activity counts with a target's figures, against hand-computed energies."""
import pytest

from snncompile.report.cost import price

TOTALS = {"ACs": 100, "MACs": 10, "host_MACs": 50, "attention_accumulates": 20, "spikes": 30,
          "neuron_updates_active": 40, "neuron_updates_inactive": 60}


def test_the_45nm_convention_prices_accumulates_and_macs_only():
    e = price(TOTALS, samples=2, target="cmos45")
    # (100 + 20) ACs x 0.9 pJ + (10 + 50) MACs x 4.6 pJ, over 2 samples
    assert e.per_sample_pj == pytest.approx({"ACs": 45.0, "attention_accumulates": 9.0, "MACs": 23.0,
                                             "host_MACs": 115.0})
    assert e.total_pj == pytest.approx(192.0)
    assert set(e.unpriced) == {"spikes", "neuron_updates_active", "neuron_updates_inactive"}
    assert e.figures["ac_energy"]["value"] == 0.9 and e.figures["mac_energy"]["unit"] == "pJ"


def test_loihi1_prices_synaptic_ops_neuron_updates_and_spikes_with_table_2():
    e = price(TOTALS, samples=2, target="loihi1")
    # Davies et al. 2018 Table 2: 23.6 pJ per synaptic op, 81 / 52 pJ per active / inactive update, 1.7 pJ a spike
    expected = (130 * 23.6 + 40 * 81.0 + 60 * 52.0 + 30 * 1.7) / 2
    assert e.total_pj == pytest.approx(expected)
    assert e.unpriced == ("host_MACs",)  # the first layer runs on the host
    assert e.figures["synaptic_op_energy"]["status"] == "pre-silicon"


def test_loihi2_figures_are_labelled_calibrated_and_zero_counts_are_not_listed():
    e = price({**TOTALS, "host_MACs": 0}, samples=1, target="loihi2")
    assert all(f["status"] == "calibrated" for f in e.figures.values()) and e.unpriced == ()
    with pytest.raises(ValueError, match="samples must be >= 1"):
        price(TOTALS, samples=0, target="loihi2")
