"""The simulator's timing model reproduces the published LTO figures (tape-facts §4)."""

from __future__ import annotations

import random

import pytest
from archive_core_tape_ltfs.model import FormatRequest, LoadRequest, MountRequest, UnloadRequest
from archive_core_tape_ltfs.sim.timing import BOT, MB, PROFILES, Position, TimingModel, profile_for
from hypothesis import given
from hypothesis import strategies as st

SAMPLES = 4000


def _random_positions(model: TimingModel, seed: int = 7):
    rng = random.Random(seed)
    blocks = model.profile.blocks_per_wrap * (model.profile.wraps - 4)
    return [Position(partition=1, block=rng.randrange(blocks)) for _ in range(SAMPLES)]


def measured_averages(generation: int, form: str) -> tuple[float, float]:
    model = TimingModel(profile=profile_for(generation, form))
    targets = _random_positions(model)
    locate = sum(model.locate(BOT, t) for t in targets) / len(targets)
    rewind = sum(model.rewind(t) for t in targets) / len(targets)
    return locate, rewind


@pytest.mark.parametrize(("generation", "form"), sorted(PROFILES))
def test_average_locate_and_rewind_are_within_15_percent_of_the_published_figures(generation, form):
    profile = profile_for(generation, form)
    locate, rewind = measured_averages(generation, form)
    assert locate == pytest.approx(profile.published_avg_locate, rel=0.15)
    assert rewind == pytest.approx(profile.published_avg_rewind, rel=0.15)


def test_lto9_full_height_figures_are_the_ibm_ones():
    locate, rewind = measured_averages(9, "FH")
    assert locate == pytest.approx(45, rel=0.15) and rewind == pytest.approx(55, rel=0.15)
    hh_locate, hh_rewind = measured_averages(9, "HH")
    assert hh_locate == pytest.approx(65, rel=0.15) and hh_rewind == pytest.approx(62, rel=0.15)


def test_one_wrap_written_at_native_rate_takes_about_161_seconds_on_lto9():
    profile = profile_for(9)
    model = TimingModel(profile=profile)
    seconds, backhitches = model.stream(profile.capacity_bytes // profile.wraps)
    assert seconds == pytest.approx(161, rel=0.02) and backhitches == 0


def test_a_full_lto9_takes_12_and_a_half_hours_to_fill():
    model = TimingModel(profile=profile_for(9))
    seconds, _ = model.stream(18 * 10**12)
    assert seconds / 3600 == pytest.approx(12.5, rel=0.01)


def test_a_feed_between_floor_and_native_is_speed_matched_without_back_hitches():
    model = TimingModel(profile=profile_for(9))
    seconds, backhitches = model.stream(10_000 * MB, feed_rate=200 * MB)
    assert seconds == pytest.approx(50) and backhitches == 0


@given(feed=st.floats(min_value=10 * MB, max_value=176 * MB))
def test_a_feed_below_the_speed_matching_floor_back_hitches_and_loses_throughput(feed):
    model = TimingModel(profile=profile_for(9))
    nbytes = 100_000 * MB
    seconds, backhitches = model.stream(nbytes, feed_rate=feed)
    assert backhitches > 0
    assert nbytes / seconds < feed


def test_locating_costs_grow_with_distance_and_serpentine_direction():
    model = TimingModel(profile=profile_for(9))
    bpw = model.profile.blocks_per_wrap
    near = model.locate(Position(partition=1, block=0), Position(partition=1, block=bpw // 10))
    far = model.locate(Position(partition=1, block=0), Position(partition=1, block=bpw - 1))
    assert far > near > 0
    # the next wrap runs backwards: its start is at the far end of the tape
    next_wrap_start = model.locate(Position(partition=1, block=0), Position(partition=1, block=bpw))
    assert next_wrap_start == pytest.approx(far, rel=0.05)


def test_hours_of_tape_work_take_only_moments_of_real_time(tmp_path):
    import time

    from archive_core_tape_ltfs.config import SimulatorSettings
    from archive_core_tape_ltfs.sim.library import SimLibrary

    sim = SimLibrary.open(SimulatorSettings(state_dir=tmp_path / "full-size"))
    started = time.perf_counter()
    sim.changer.load(LoadRequest(slot=1, drive=0, barcode="SIM001L9"))
    ready = sim.drive(0).wait_ready(new_cartridge=True)
    assert ready.state.value == "ready"
    # LTO-9 media optimisation of a new cartridge: 40 minutes of simulated time.
    assert sim.clock.now() >= 40 * 60
    sim.ltfs.format(FormatRequest(drive=0, barcode="SIM001L9"))
    mount = sim.ltfs.mount(MountRequest(drive=0))
    for n in range(200):
        with mount.open_write(f"f{n}", source_rate=50 * MB) as fh:
            fh.write(b"x" * 1000)
    # Spread the files over the tape as a long archive life would.
    with sim.transaction() as state:
        volume = state.cartridges["SIM001L9"].volume
        for n, file in enumerate(volume.files.values()):
            file.startblock = n * 150_000
    for n in reversed(range(200)):
        with mount.open_read(f"f{n}") as fh:
            fh.read()
    sim.ltfs.unmount(mount)
    sim.changer.unload(UnloadRequest(drive=0))
    assert time.perf_counter() - started < 5
    # 200 locates back through the tape, on top of the calibration: hours of simulated time.
    assert sim.clock.now() > 2 * 3600


def test_load_unload_and_robot_times_follow_the_profile(sim):
    profile = profile_for(9)
    sim.changer.load(LoadRequest(slot=3, drive=0, barcode="AAA003L9"))  # calibrated already
    start = sim.clock.now()
    sim.drive(0).wait_ready()
    assert sim.clock.now() - start == pytest.approx(profile.load_seconds, abs=1.5)
    start = sim.clock.now()
    sim.changer.unload(UnloadRequest(drive=0))
    # at BOT: nominal unload + robot move + one element status read
    assert sim.clock.now() - start == pytest.approx(profile.unload_seconds + 12 + 1, abs=0.5)
