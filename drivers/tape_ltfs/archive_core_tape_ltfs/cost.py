"""The public cost model: how long each robot, drive and LTFS step takes, per generation.

The simulator charges its virtual clock with it, and a planner (restore ordering, whether an
exchange pays) can use it for a real library too: it depends on nothing but the figures.

Figures are the published ones of tape-facts §4 (IBM full- and half-height drives); where a
figure was not published the value is marked as an estimate. Locate follows the LTFS file
backend's model: a block's wrap and longitudinal offset, serpentine wraps (even forward, odd
backward), a cost per longitudinal distance plus track and direction changes.
"""

from __future__ import annotations

import math

import attrs

MB = 1_000_000
TB = 1_000_000_000_000
BLOCK_SIZE = 524288  # LTFS default block size
IP_WRAPS = 2  # index partition
GUARD_WRAPS = 2  # between the partitions


@attrs.frozen(kw_only=True)
class TimingProfile:
    """Mechanical and streaming figures of one drive generation and form factor."""

    generation: int
    form: str = "FH"
    capacity_bytes: int
    native_rate: float  # bytes/s
    speed_match_floor: float  # bytes/s; slower feeds make the drive back-hitch
    wraps: int
    load_seconds: float  # load-to-ready (threading included)
    unload_seconds: float  # nominal unload, after the rewind
    # BOT<->EOT traversal at locate and at rewind speed. They are chosen so that the average
    # locate from BOT and the average rewind of the model reproduce the published averages.
    locate_traverse_seconds: float
    rewind_traverse_seconds: float
    published_avg_locate: float
    published_avg_rewind: float
    track_change_seconds: float = 0.01  # LTFS file backend default
    direction_change_seconds: float = 2.0  # LTFS file backend default
    calibration_seconds: float = 0.0  # first load of a new cartridge (LTO-9 only)
    buffer_bytes: int = 1024 * MB  # drive data buffer; estimate
    backhitch_seconds: float = 3.0  # stop, reverse, restart; estimate

    @property
    def blocks_per_wrap(self) -> int:
        data_wraps = self.wraps - IP_WRAPS - GUARD_WRAPS
        return max(1, math.ceil(self.capacity_bytes / BLOCK_SIZE / data_wraps))


def _traverse(avg: float, overhead: float) -> float:
    # A uniformly random target lies on average half a tape length away.
    return round(2 * (avg - overhead), 1)


def _profile(**kw) -> TimingProfile:
    avg_locate = kw["published_avg_locate"]
    avg_rewind = kw["published_avg_rewind"]
    direction = kw.get("direction_change_seconds", 2.0)
    track = kw.get("track_change_seconds", 0.01)
    # Locating from BOT changes track always and direction on half the wraps; a rewind always
    # runs backwards (one direction change charged).
    kw.setdefault("locate_traverse_seconds", _traverse(avg_locate, track + direction / 2))
    kw.setdefault("rewind_traverse_seconds", _traverse(avg_rewind, direction + track))
    return TimingProfile(**kw)


PROFILES: dict[tuple[int, str], TimingProfile] = {
    (5, "FH"): _profile(
        generation=5,
        capacity_bytes=int(1.5 * TB),
        native_rate=140 * MB,
        speed_match_floor=47 * MB,  # estimate: about a third of native (HP adaptive speed)
        wraps=80,
        load_seconds=12,
        unload_seconds=17,
        published_avg_locate=60,
        published_avg_rewind=60,  # HH figures; FH not published
    ),
    (6, "FH"): _profile(
        generation=6,
        capacity_bytes=int(2.5 * TB),
        native_rate=160 * MB,
        speed_match_floor=54 * MB,  # estimate
        wraps=136,
        load_seconds=12,
        unload_seconds=17,
        published_avg_locate=62,
        published_avg_rewind=62,  # HH locate; rewind estimate
    ),
    (7, "FH"): _profile(
        generation=7,
        capacity_bytes=6 * TB,
        native_rate=300 * MB,
        speed_match_floor=101.46 * MB,
        wraps=112,
        load_seconds=15,
        unload_seconds=20,
        published_avg_locate=56,
        published_avg_rewind=60,  # HH figures
    ),
    (8, "FH"): _profile(
        generation=8,
        capacity_bytes=12 * TB,
        native_rate=360 * MB,
        speed_match_floor=112 * MB,
        wraps=208,
        load_seconds=15,
        unload_seconds=24,
        published_avg_locate=59,
        published_avg_rewind=59,  # HH figures
    ),
    (9, "FH"): _profile(
        generation=9,
        capacity_bytes=18 * TB,
        native_rate=400 * MB,
        speed_match_floor=177 * MB,
        wraps=280,
        load_seconds=17,
        unload_seconds=30,
        published_avg_locate=45,
        published_avg_rewind=55,
        calibration_seconds=40 * 60,
    ),
    (9, "HH"): _profile(
        generation=9,
        form="HH",
        capacity_bytes=18 * TB,
        native_rate=300 * MB,
        speed_match_floor=177 * MB * 300 / 400,  # estimate: FH floor scaled to HH native
        wraps=280,
        load_seconds=16,
        unload_seconds=56,
        published_avg_locate=65,
        published_avg_rewind=62,
        calibration_seconds=40 * 60,
    ),
    (10, "FH"): _profile(
        generation=10,
        capacity_bytes=30 * TB,
        native_rate=400 * MB,
        speed_match_floor=157 * MB,
        wraps=280,  # wraps not published: estimate
        load_seconds=12,
        unload_seconds=27,
        published_avg_locate=65,
        published_avg_rewind=62,
    ),
}


def profile_for(generation: int, form: str = "FH") -> TimingProfile:
    return PROFILES.get((generation, form)) or PROFILES[(generation, "FH")]


@attrs.frozen(kw_only=True)
class Position:
    """Head position: SCSI partition (0 index, 1 data) and block within it."""

    partition: int = 0
    block: int = 0


BOT = Position()


@attrs.frozen(kw_only=True)
class LibraryTimings:
    """Robot and LTFS-software figures that do not depend on the drive generation."""

    robot_move_seconds: float = 12.0  # slot <-> drive, mid-size library (10-15 s published)
    inventory_base_seconds: float = 20.0
    inventory_per_slot_seconds: float = 0.5
    mount_base_seconds: float = 10.0  # read label and index
    mount_per_file_seconds: float = 0.0002
    sync_base_seconds: float = 2.0
    sync_per_file_seconds: float = 0.00017  # 46 k files in 7-9 s (ltfs#448)
    per_file_seconds: float = 0.02  # open/close/index entry; estimate
    format_seconds: float = 30.0  # label + two indexes
    cleaning_seconds: float = 90.0  # a cleaning cycle; estimate
    consistency_check_seconds: float = 300.0  # full medium check at mount after a crash


@attrs.frozen(kw_only=True)
class TimingModel:
    profile: TimingProfile
    library: LibraryTimings = LibraryTimings()

    def _wrap_and_offset(self, position: Position) -> tuple[int, float]:
        """The wrap a block is on and its longitudinal position as a fraction of tape length."""
        bpw = self.profile.blocks_per_wrap
        if position.partition == 0:
            wrap = min(position.block // bpw, IP_WRAPS - 1)
        else:
            wrap = IP_WRAPS + GUARD_WRAPS + position.block // bpw
        offset = (position.block % bpw) / bpw
        longitudinal = offset if wrap % 2 == 0 else 1.0 - offset
        return wrap, longitudinal

    def locate(self, start: Position, target: Position, *, traverse: float | None = None) -> float:
        if start == target:
            return 0.0
        wrap_a, long_a = self._wrap_and_offset(start)
        wrap_b, long_b = self._wrap_and_offset(target)
        seconds = abs(long_b - long_a) * (traverse or self.profile.locate_traverse_seconds)
        if wrap_a != wrap_b or start.partition != target.partition:
            seconds += self.profile.track_change_seconds
        forward_a = wrap_a % 2 == 0
        moving_forward = long_b >= long_a
        if moving_forward != forward_a:
            seconds += self.profile.direction_change_seconds
        return seconds

    def rewind(self, start: Position) -> float:
        if start == BOT:
            return 0.0
        return self.locate(start, BOT, traverse=self.profile.rewind_traverse_seconds)

    def load(self, *, new_cartridge: bool) -> float:
        extra = self.profile.calibration_seconds if new_cartridge else 0.0
        return self.profile.load_seconds + extra

    def unload(self, start: Position) -> float:
        return self.rewind(start) + self.profile.unload_seconds

    def stream(self, nbytes: int, feed_rate: float | None = None) -> tuple[float, int]:
        """Seconds to write or read `nbytes` fed at `feed_rate`, and the back-hitches it costs.

        At or above native rate the drive streams at native rate; between the speed-matching
        floor and native it slows to the feed; below the floor it runs at the floor, empties its
        buffer, and stops, reverses and restarts (a back-hitch) each time the buffer runs dry.
        """
        if nbytes <= 0:
            return 0.0, 0
        native = self.profile.native_rate
        floor = self.profile.speed_match_floor
        if feed_rate is None or feed_rate >= native:
            return nbytes / native, 0
        if feed_rate >= floor:
            return nbytes / feed_rate, 0
        # Each buffer-full: the drive writes it at the floor rate while the host keeps feeding,
        # the buffer runs dry, and the drive repositions before the next burst.
        burst = self.profile.buffer_bytes * floor / (floor - feed_rate)
        backhitches = math.ceil(nbytes / burst)
        return nbytes / feed_rate + backhitches * self.profile.backhitch_seconds, backhitches

    def index_sync(self, files: int) -> float:
        return self.library.sync_base_seconds + files * self.library.sync_per_file_seconds

    def mount(self, files: int) -> float:
        return self.library.mount_base_seconds + files * self.library.mount_per_file_seconds

    def inventory(self, slots: int) -> float:
        return self.library.inventory_base_seconds + slots * self.library.inventory_per_slot_seconds

    def blocks_for(self, nbytes: int) -> int:
        return max(1, math.ceil(nbytes / BLOCK_SIZE)) if nbytes > 0 else 0
