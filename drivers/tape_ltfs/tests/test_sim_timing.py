"""The simulator's timing behaves as a serpentine LTO tape does (tape-facts §4).

The profiles are calibrated from published figures; these tests check what that calibration
does not already say: how costs depend on distance, wraps, direction, head position and feed
rate, and that the simulated library charges a step what the head's movement says it costs.
"""

from __future__ import annotations

import pytest
from archive_core_tape_ltfs.cost import (
    BLOCK_SIZE,
    GUARD_WRAPS,
    IP_WRAPS,
    PROFILES,
    Position,
    TimingModel,
    TimingProfile,
    position,
    profile_for,
)
from archive_core_tape_ltfs.model import FormatRequest, LoadRequest, MountRequest, UnloadRequest
from archive_core_tape_ltfs.sim.mechanics import FIRST_DATA_BLOCK
from hypothesis import given
from hypothesis import strategies as st

MODELS = st.sampled_from(sorted(PROFILES)).map(lambda key: TimingModel(profile=PROFILES[key]))


def data_wraps(profile: TimingProfile) -> int:
    return profile.wraps - IP_WRAPS - GUARD_WRAPS


def along(model: TimingModel, wrap: int, fraction: float) -> Position:
    """The data-partition block `fraction` of the way along data wrap `wrap`, as it is written."""
    bpw = model.profile.blocks_per_wrap
    return Position(partition=1, block=wrap * bpw + round(fraction * (bpw - 1)))


@st.composite
def wrap_and_fractions(draw, count: int, *, gap: float = 0.01):
    """A model, a data wrap and `count` increasing fractions of it at least `gap` apart."""
    model = draw(MODELS)
    wrap = draw(st.integers(0, data_wraps(model.profile) - 3))
    fractions = sorted(draw(st.lists(st.floats(0, 1), min_size=count, max_size=count)))
    fractions = [f * (1 - gap * (count - 1)) + gap * n for n, f in enumerate(fractions)]
    return model, wrap, fractions


# --- the head's movement ---------------------------------------------------------------------


@given(wrap_and_fractions(3))
def test_locate_time_grows_with_the_distance_along_the_wrap(drawn):
    model, wrap, (start, near, far) = drawn
    head = along(model, wrap, start)
    to_near = model.locate(head, along(model, wrap, near))
    assert 0 < to_near < model.locate(head, along(model, wrap, far))


@given(wrap_and_fractions(2), st.sampled_from([1, 2]))
def test_a_locate_that_changes_wrap_costs_more_than_the_same_distance_on_this_wrap(drawn, step):
    model, wrap, (start, target) = drawn
    head = along(model, wrap, start)
    same_wrap = model.locate(head, along(model, wrap, target))
    # The same longitudinal spot on another wrap: fraction mirrored when that wrap runs back.
    spot = target if step % 2 == 0 else 1 - target
    assert model.locate(head, along(model, wrap + step, spot)) > same_wrap


@given(MODELS, st.data())
def test_locating_back_against_the_wraps_direction_costs_more_than_going_on(model, data):
    wrap = data.draw(st.integers(0, data_wraps(model.profile) - 1))
    start = data.draw(st.floats(0.01, 0.99))
    distance = data.draw(st.floats(0.005, min(start, 1 - start)))  # the same either way
    head = along(model, wrap, start)
    back = model.locate(head, along(model, wrap, start - distance))
    assert back > model.locate(head, along(model, wrap, start + distance))


@given(MODELS, st.data())
def test_the_next_wrap_starts_where_this_one_ends(model, data):
    wrap = data.draw(st.integers(0, data_wraps(model.profile) - 2))
    start = along(model, wrap, 0.0)
    end_of_wrap = model.locate(start, along(model, wrap, 1.0))
    start_of_next = model.locate(start, along(model, wrap + 1, 0.0))
    one_percent = model.locate(start, along(model, wrap, 0.01))
    assert end_of_wrap < start_of_next < end_of_wrap + one_percent


@given(MODELS, st.data())
def test_a_short_locate_is_cheaper_than_a_rewind(model, data):
    wrap = data.draw(st.integers(0, data_wraps(model.profile) - 1))
    # A head at least a tenth of the tape's length from its beginning, whichever way it runs.
    lengthwise = data.draw(st.floats(0.1, 0.99))
    fraction = lengthwise if wrap % 2 == 0 else 1 - lengthwise
    head = along(model, wrap, fraction)
    a_few_files_on = along(model, wrap, fraction + 0.005)
    assert model.locate(head, a_few_files_on) < model.rewind(head)


@given(wrap_and_fractions(2))
def test_a_rewind_takes_longer_the_further_the_head_is_from_the_beginning(drawn):
    model, _, (near, far) = drawn
    # Data wrap 0 runs forward, away from the beginning of the tape.
    assert model.rewind(along(model, 0, near)) < model.rewind(along(model, 0, far))


# --- streaming -------------------------------------------------------------------------------

NBYTES = st.integers(1, 10**12)


@given(MODELS, NBYTES, st.floats(1.0, 4.0))
def test_a_feed_at_or_above_native_rate_streams_as_fast_as_an_unlimited_one(model, nbytes, x):
    feed = model.profile.native_rate * x
    assert model.stream(nbytes, rate=feed) == model.stream(nbytes)


@given(MODELS, NBYTES, st.floats(0.0, 1.0, exclude_max=True))
def test_a_feed_between_floor_and_native_is_speed_matched_without_back_hitches(
    model, nbytes, share
):
    floor, native = model.profile.speed_match_floor, model.profile.native_rate
    feed = floor + share * (native - floor)
    seconds, backhitches = model.stream(nbytes, rate=feed)
    assert seconds == pytest.approx(nbytes / feed) and backhitches == 0


@given(MODELS, st.lists(st.floats(0.05, 0.99), min_size=2, max_size=2, unique=True))
def test_the_further_a_feed_falls_below_the_floor_the_more_it_back_hitches(model, shares):
    nbytes = 100 * model.profile.buffer_bytes
    slower, faster = (model.profile.speed_match_floor * s for s in sorted(shares))
    slow_seconds, slow_hitches = model.stream(nbytes, rate=slower)
    fast_seconds, fast_hitches = model.stream(nbytes, rate=faster)
    assert slow_hitches >= fast_hitches > 0
    assert nbytes / fast_seconds < faster and nbytes / slow_seconds < slower


# --- the planner's figures -------------------------------------------------------------------


@given(MODELS, st.data())
def test_even_the_shortest_locate_costs_seconds_but_staying_put_costs_nothing(model, data):
    block = data.draw(st.integers(0, model.profile.blocks_per_wrap * 10))
    here = Position(partition=1, block=block)
    assert model.locate(here, here) == 0
    assert model.locate(here, Position(partition=1, block=block + 1)) >= 2.0


@given(MODELS, st.integers(0, 1000), st.integers(0, 1000))
def test_changing_partition_costs_more_than_a_short_locate_within_one(model, index, data):
    across = model.locate(Position(partition=0, block=index), Position(partition=1, block=data))
    profile = model.profile
    assert across >= profile.min_locate_seconds + profile.partition_change_seconds
    next_block = model.locate(
        Position(partition=1, block=data), Position(partition=1, block=data + 1)
    )
    assert next_block < across


def test_an_lto9_unload_rewinds_by_activity_since_load_whatever_the_head_position():
    for form, buckets in (("FH", (55, 110, 165)), ("HH", (62, 124, 186))):
        model = TimingModel(profile=profile_for(9, form))
        nominal = model.profile.unload_seconds
        far = Position(partition=1, block=10**7)
        for activity, rewind in zip((10**9, 20 * 10**9, 10**12), buckets, strict=True):
            assert model.unload(BOT_OF_DATA, activity) == nominal + rewind
            assert model.unload(far, activity) == nominal + rewind


def test_media_optimisation_takes_20_to_120_minutes_about_40_on_average():
    model = TimingModel(profile=profile_for(9))
    draws = [model.calibration_seconds(n / 1000) for n in range(1000)]
    assert min(draws) >= 20 * 60 and max(draws) <= 120 * 60
    assert 38 * 60 < sum(draws) / len(draws) < 42 * 60
    assert (
        model.load(new_cartridge=True) == model.profile.load_seconds + model.calibration_seconds()
    )
    assert TimingModel(profile=profile_for(10)).load(new_cartridge=True) == 12


def test_a_position_is_named_by_partition_letter_and_start_block():
    assert position("a", 2) == Position(partition=0, block=2)
    assert position("b", 9) == Position(partition=1, block=9)
    with pytest.raises(ValueError):
        position("c", 1)


BOT_OF_DATA = Position(partition=1, block=5)

# --- the simulated library charges what the head does --------------------------------------

FILE_BYTES = 1000


def lto9_volume(tmp_path, startblocks: list[int], *, generation: int = 9):
    """A native-capacity library whose cartridge SIM001 holds a small file at each start block
    (f0, f1, ...; increasing), unmounted, in drive 0. Synthetic filler files put them there, as
    a long archive life would."""
    from archive_core_tape_ltfs.config import SimulatorSettings
    from archive_core_tape_ltfs.sim.library import SimLibrary

    settings = SimulatorSettings(state_dir=tmp_path / "lto", generation=generation)
    sim = SimLibrary.open(settings)
    barcode = f"SIM001L{generation}"
    sim.changer.load(LoadRequest(slot=1, drive=0, barcode=barcode))
    sim.drive(0).wait_ready(new_cartridge=True)
    sim.ltfs.format(FormatRequest(drive=0, barcode=barcode))
    mount = sim.ltfs.mount(MountRequest(drive=0))
    append = FIRST_DATA_BLOCK  # a new volume's first data block; each small file takes one
    for n, block in enumerate(startblocks):
        if block > append:
            mount.write_synthetic(f"filler{n}", (block - append) * BLOCK_SIZE, seed=n)
        with mount.open_write(f"f{n}") as fh:
            fh.write(b"x" * FILE_BYTES)
        assert mount.location(f"f{n}").startblock == block
        append = block + 1
    sim.ltfs.unmount(mount)
    return sim


def reading_costs(sim, names: list[str]) -> list[float]:
    """Simulated seconds each read took, reading `names` in that order in one mount."""
    mount = sim.ltfs.mount(MountRequest(drive=0, read_only=True))
    costs = []
    for name in names:
        before = sim.clock.now()
        with mount.open_read(name) as fh:
            assert len(fh.read()) == FILE_BYTES
        costs.append(sim.clock.now() - before)
    sim.ltfs.unmount(mount)
    return costs


def test_a_file_read_back_costs_the_locate_from_the_head_to_its_position_and_its_streaming(
    tmp_path,
):
    model = TimingModel(profile=profile_for(9))
    spots = [(0, 0.2), (1, 0.9), (7, 0.5), (40, 0.1), (41, 0.1), (200, 0.7)]
    startblocks = [along(model, wrap, fraction).block for wrap, fraction in spots]
    sim = lto9_volume(tmp_path, startblocks)
    order = [3, 0, 5, 4, 1, 2]
    mount = sim.ltfs.mount(MountRequest(drive=0, read_only=True))
    for n in order:
        drive = sim.snapshot().drive(0)
        head = Position(partition=drive.partition, block=drive.block)
        before = sim.clock.now()
        with mount.open_read(f"f{n}") as fh:
            fh.read()
        expected = model.locate(head, Position(partition=1, block=startblocks[n]))
        assert sim.clock.now() - before == pytest.approx(expected + model.stream(FILE_BYTES)[0])
    sim.ltfs.unmount(mount)


def test_reading_files_in_on_tape_order_costs_less_than_in_reverse_order(tmp_path):
    model = TimingModel(profile=profile_for(9))
    # Written one after another, as LTFS appends: five files a wrap, over four wraps.
    startblocks = [FIRST_DATA_BLOCK + n * model.profile.blocks_per_wrap // 5 for n in range(20)]
    sim = lto9_volume(tmp_path, startblocks)
    names = [f"f{n}" for n in range(len(startblocks))]

    in_order = sum(reading_costs(sim, names))
    reversed_order = sum(reading_costs(sim, names[::-1]))

    assert in_order < reversed_order


def test_the_next_file_on_tape_is_cheaper_to_read_than_one_far_away(tmp_path):
    model = TimingModel(profile=profile_for(9))
    startblocks = [along(model, 0, 0.10).block, along(model, 0, 0.11).block]
    startblocks.append(along(model, 0, 0.90).block)
    sim = lto9_volume(tmp_path, startblocks)

    _, next_one = reading_costs(sim, ["f0", "f1"])
    _, far_one = reading_costs(sim, ["f0", "f2"])

    assert next_one < far_one


def unload_seconds(sim) -> float:
    before = sim.clock.now()
    sim.changer.unload(UnloadRequest(drive=0))
    return sim.clock.now() - before


def test_an_lto8_unload_takes_longer_the_further_down_the_tape_the_head_was_left(tmp_path):
    model = TimingModel(profile=profile_for(8))
    startblocks = [along(model, 0, f).block for f in (0.1, 0.5, 0.9)]
    sim = lto9_volume(tmp_path, startblocks, generation=8)
    unloads = []
    for last_read in [None, "f0", "f1", "f2"]:
        if last_read is not None:
            reading_costs(sim, [last_read])  # read-only: no index write moves the head back
        unloads.append(unload_seconds(sim))
        sim.changer.load(LoadRequest(slot=1, drive=0, barcode="SIM001L8"))
        sim.drive(0).wait_ready()

    assert unloads == sorted(unloads) and len(set(unloads)) == len(unloads)


def test_an_lto9_unload_takes_longer_the_more_was_read_since_the_load(tmp_path):
    sim = lto9_volume(tmp_path, [FIRST_DATA_BLOCK])  # left unmounted in drive 0
    mount = sim.ltfs.mount(MountRequest(drive=0))
    for name, size in (("small", 10**9), ("medium", 20 * 10**9), ("large", 100 * 10**9)):
        mount.write_synthetic(name, size, seed=1)
    sim.ltfs.unmount(mount)
    unloads = []
    for name in ("small", "medium", "large"):
        sim.changer.unload(UnloadRequest(drive=0))
        sim.changer.load(LoadRequest(slot=1, drive=0, barcode="SIM001L9"))
        sim.drive(0).wait_ready()
        mount = sim.ltfs.mount(MountRequest(drive=0, read_only=True))
        with mount.open_read(name) as fh:
            fh.drain()
        sim.ltfs.unmount(mount)
        unloads.append(unload_seconds(sim))
        sim.changer.load(LoadRequest(slot=1, drive=0, barcode="SIM001L9"))
        sim.drive(0).wait_ready()
    small, medium, large = unloads
    assert medium - small == pytest.approx(55) and large - medium == pytest.approx(55)


def test_a_new_lto9_cartridge_is_optimised_on_its_first_load_only(sim):
    loads = []
    for _ in range(3):
        sim.changer.load(LoadRequest(slot=1, drive=0, barcode="AAA001L9"))
        before = sim.clock.now()
        sim.drive(0).wait_ready(new_cartridge=True)
        loads.append(sim.clock.now() - before)
        sim.changer.unload(UnloadRequest(drive=0))

    first, second, third = loads
    assert first > second == third > 0
    assert 20 * 60 < first < 120 * 60 + 60


def test_hours_of_tape_work_take_only_moments_of_real_time(tmp_path):
    import time

    started = time.perf_counter()
    sim = lto9_volume(tmp_path, [FIRST_DATA_BLOCK + n * 150_000 for n in range(200)])
    reading_costs(sim, [f"f{n}" for n in reversed(range(200))])
    sim.changer.unload(UnloadRequest(drive=0))
    assert time.perf_counter() - started < 5
    # 15 TB written, then 200 locates back through the tape.
    assert sim.clock.now() > 10 * 3600
