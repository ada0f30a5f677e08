"""The public cost model: how long each robot, drive and LTFS step takes, per generation.

The simulator charges its virtual clock through exactly these functions, and a planner
(restore ordering, whether an exchange pays, how many drives to use) can call them for a real
library too: the module depends on nothing but the figures.

Figures are the published ones of tape-facts §4 (IBM full- and half-height drives); where a
figure was not published the value is marked as an estimate with its reasoning. Locate follows
the LTFS file backend's model: a block's wrap and longitudinal offset, serpentine wraps (even
forward, odd backward), a cost per longitudinal distance plus track and direction changes, plus
a fixed cost per locate that the file backend leaves out.
"""

from __future__ import annotations

import math

import attrs

MB = 1_000_000
GB = 1_000_000_000
TB = 1_000_000_000_000
BLOCK_SIZE = 524288  # LTFS default block size
IP_WRAPS = 2  # index partition
GUARD_WRAPS = 2  # between the partitions
INDEX_BLOCK = 2  # where LTFS keeps the index on the index partition (after the label)
INDEX_BYTES_PER_FILE = 1024  # XML index size per file entry; estimate
# LTO-9 unload rewind buckets are by activity since load (tape-facts §4.1): under 5 GB read or
# written, 5-50 GB, more.
ACTIVITY_BUCKETS = (5 * GB, 50 * GB)


@attrs.frozen(kw_only=True)
class CalibrationSpread:
    """How long an LTO-9 media optimisation takes: 20 to 120 minutes, about 40 on average.

    IBM: "averages 40 minutes ... most within 60 ... up to 2 hours"; IBM Storage Protect
    "between 20 and 120 minutes" (tape-facts §4.2). Modelled as the shortest time plus an
    exponential tail cut at the longest, so most draws are short and a few run long; a mean
    excess of 21 minutes makes the mean 40.1 minutes.
    """

    shortest: float = 20 * 60
    longest: float = 120 * 60
    mean_excess: float = 21 * 60

    @property
    def mean(self) -> float:
        span, m = self.longest - self.shortest, self.mean_excess
        tail = math.exp(-span / m)
        return self.shortest + m - span * tail / (1 - tail)

    def draw(self, uniform: float) -> float:
        """The duration at quantile `uniform` (0 <= uniform < 1) of the spread."""
        span, m = self.longest - self.shortest, self.mean_excess
        cut = 1 - math.exp(-span / m)
        return self.shortest - m * math.log(1 - uniform * cut)


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
    # The rewind inside an unload by activity since load (<5 GB, 5-50 GB, more), where the
    # vendor publishes it (LTO-9); otherwise the rewind is modelled from the head's position.
    unload_rewind_buckets: tuple[float, float, float] | None = None
    # BOT<->EOT traversal at locate and at rewind speed. They are chosen so that the average
    # locate from BOT and the average rewind of the model reproduce the published averages.
    locate_traverse_seconds: float
    rewind_traverse_seconds: float
    published_avg_locate: float
    published_avg_rewind: float
    track_change_seconds: float = 0.01  # LTFS file backend default
    direction_change_seconds: float = 2.0  # LTFS file backend default
    # Estimate. Every LOCATE costs seconds even to a neighbouring block: the drive stops the
    # tape, reverses past the target, re-acquires the servo and the data set on the way back
    # in, which is one back-hitch (about 2-3 s; the LTFS file backend charges 2 s for the
    # direction change alone). A head already at the target needs no locate and pays nothing.
    min_locate_seconds: float = 2.0
    # Estimate. Changing partition moves the head to another band (the index partition is on
    # the outermost wraps) and re-reads its servo, on top of the longitudinal move: about two
    # back-hitches. The file backend's 10 ms track change leaves this out.
    partition_change_seconds: float = 4.0
    calibration: CalibrationSpread | None = None  # first load of a new cartridge (LTO-9 only)
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
    fixed = kw.get("min_locate_seconds", 2.0)
    # Locating from BOT changes track always and direction on half the wraps; a rewind always
    # runs backwards (one direction change charged). Both pay the fixed cost of a locate.
    kw.setdefault("locate_traverse_seconds", _traverse(avg_locate, fixed + track + direction / 2))
    kw.setdefault("rewind_traverse_seconds", _traverse(avg_rewind, fixed + direction + track))
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
        unload_rewind_buckets=(55, 110, 165),
        published_avg_locate=45,
        published_avg_rewind=55,
        calibration=CalibrationSpread(),
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
        unload_rewind_buckets=(62, 124, 186),
        published_avg_locate=65,
        published_avg_rewind=62,
        calibration=CalibrationSpread(),
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
INDEX_POSITION = Position(partition=0, block=INDEX_BLOCK)


def position(partition: str, startblock: int) -> Position:
    """The head position of an LTFS location: partition "a" (index) or "b" (data), a block."""
    if partition not in ("a", "b"):
        raise ValueError(f"an LTFS partition is 'a' or 'b', not {partition!r}")
    return Position(partition=0 if partition == "a" else 1, block=startblock)


@attrs.frozen(kw_only=True)
class LibraryTimings:
    """Robot and LTFS-software figures that do not depend on the drive generation."""

    robot_move_seconds: float = 12.0  # slot <-> drive, mid-size library (10-15 s published)
    element_status_seconds: float = 1.0  # one READ ELEMENT STATUS, before every move
    inventory_base_seconds: float = 20.0
    inventory_per_slot_seconds: float = 0.5
    mount_base_seconds: float = 10.0  # read label and index
    mount_per_file_seconds: float = 0.0002
    sync_base_seconds: float = 2.0
    sync_per_file_seconds: float = 0.00017  # 46 k files in 7-9 s (ltfs#448)
    clean_unmount_seconds: float = 1.0  # nothing changed: no index to write
    per_file_seconds: float = 0.02  # open/close/index entry; estimate
    format_seconds: float = 30.0  # label + two indexes
    cleaning_seconds: float = 90.0  # a cleaning cycle; estimate
    consistency_check_seconds: float = 300.0  # full medium check at mount after a crash


@attrs.frozen(kw_only=True)
class Exchange:
    """What replacing the mounted cartridge of a drive by another costs, step by step."""

    unmount: float  # the final index write
    unload: float  # rewind and unthread, on the drive
    robot: float  # drive -> slot, slot -> drive (with the element status read before each)
    load: float  # thread and get ready (with media optimisation for a new LTO-9 cartridge)
    mount: float  # read the label and the index

    @property
    def drive_seconds(self) -> float:
        """How long the drive is busy (with the cartridge in its bay throughout)."""
        return self.unmount + self.unload + self.robot + self.load + self.mount

    @property
    def robot_seconds(self) -> float:
        return self.robot

    @property
    def seconds(self) -> float:
        """End to end, for one caller on an idle robot."""
        return self.drive_seconds


@attrs.frozen(kw_only=True)
class TimingModel:
    profile: TimingProfile
    library: LibraryTimings = LibraryTimings()

    def _wrap_and_offset(self, where: Position) -> tuple[int, float]:
        """The wrap a block is on and its longitudinal position as a fraction of tape length."""
        bpw = self.profile.blocks_per_wrap
        if where.partition == 0:
            wrap = min(where.block // bpw, IP_WRAPS - 1)
        else:
            wrap = IP_WRAPS + GUARD_WRAPS + where.block // bpw
        offset = (where.block % bpw) / bpw
        longitudinal = offset if wrap % 2 == 0 else 1.0 - offset
        return wrap, longitudinal

    def locate(self, start: Position, target: Position, *, traverse: float | None = None) -> float:
        """Seconds to move the head from `start` to `target` (0 when it is already there)."""
        if start == target:
            return 0.0
        wrap_a, long_a = self._wrap_and_offset(start)
        wrap_b, long_b = self._wrap_and_offset(target)
        seconds = self.profile.min_locate_seconds
        seconds += abs(long_b - long_a) * (traverse or self.profile.locate_traverse_seconds)
        if start.partition != target.partition:
            seconds += self.profile.partition_change_seconds
        elif wrap_a != wrap_b:
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

    def unload(self, start: Position, activity_bytes: int = 0) -> float:
        """Rewind and unthread: the rewind by activity since load (bytes read and written)
        where the vendor publishes it (LTO-9), from the head's position otherwise."""
        buckets = self.profile.unload_rewind_buckets
        if buckets is None:
            return self.rewind(start) + self.profile.unload_seconds
        small, medium, large = buckets
        if activity_bytes < ACTIVITY_BUCKETS[0]:
            rewind = small
        elif activity_bytes < ACTIVITY_BUCKETS[1]:
            rewind = medium
        else:
            rewind = large
        return rewind + self.profile.unload_seconds

    def calibration_seconds(self, uniform: float | None = None) -> float:
        """The media optimisation of a new cartridge: the spread's mean, or the duration at
        quantile `uniform` (the simulator draws it from its seed); 0 where none happens."""
        spread = self.profile.calibration
        if spread is None:
            return 0.0
        return spread.mean if uniform is None else spread.draw(uniform)

    def load(self, *, new_cartridge: bool = False, calibration: float | None = None) -> float:
        """Thread to ready; a new LTO-9 cartridge adds its media optimisation (`calibration`
        seconds, or the mean)."""
        extra = 0.0
        if new_cartridge and self.profile.calibration is not None:
            extra = self.calibration_seconds() if calibration is None else calibration
        return self.profile.load_seconds + extra

    def robot_move(self) -> float:
        return self.library.robot_move_seconds

    def stream(self, nbytes: int, rate: float | None = None) -> tuple[float, int]:
        """Seconds to write or read `nbytes` fed (or drained) at `rate`, and the back-hitches
        it costs.

        At or above native rate the drive streams at native rate; between the speed-matching
        floor and native it slows to the feed; below the floor it runs at the floor, empties its
        buffer, and stops, reverses and restarts (a back-hitch) each time the buffer runs dry.
        """
        if nbytes <= 0:
            return 0.0, 0
        native = self.profile.native_rate
        floor = self.profile.speed_match_floor
        if rate is None or rate >= native:
            return nbytes / native, 0
        if rate >= floor:
            return nbytes / rate, 0
        # Each buffer-full: the drive writes it at the floor rate while the host keeps feeding,
        # the buffer runs dry, and the drive repositions before the next burst.
        burst = self.profile.buffer_bytes * floor / (floor - rate)
        backhitches = math.ceil(nbytes / burst)
        return nbytes / rate + backhitches * self.profile.backhitch_seconds, backhitches

    def index_blocks(self, files: int) -> int:
        return max(1, math.ceil(files * INDEX_BYTES_PER_FILE / BLOCK_SIZE))

    def index_write(self, files: int) -> float:
        """Serialise the index of `files` files and write it where the head is."""
        timings = self.library
        serialise = timings.sync_base_seconds + files * timings.sync_per_file_seconds
        return serialise + self.stream(self.index_blocks(files) * BLOCK_SIZE)[0]

    def sync(self, files: int, head: Position, append_block: int) -> float:
        """An index sync: locate to the end of data, append the index to the data partition."""
        return self.locate(head, Position(partition=1, block=append_block)) + self.index_write(
            files
        )

    def unmount(self, files: int, *, dirty: bool, head: Position, append_block: int) -> float:
        """The final index write of an unmount: to the data partition, then the index
        partition; a volume nothing changed on only closes."""
        if not dirty:
            return self.library.clean_unmount_seconds
        after_data = Position(partition=1, block=append_block + self.index_blocks(files))
        return (
            self.sync(files, head, append_block)
            + self.locate(after_data, INDEX_POSITION)
            + self.index_write(files)
        )

    def mount(self, files: int, head: Position = BOT) -> float:
        """Read the label and the index (on the index partition) of a volume of `files`."""
        timings = self.library
        return (
            self.locate(head, INDEX_POSITION)
            + timings.mount_base_seconds
            + files * timings.mount_per_file_seconds
        )

    def exchange(
        self,
        *,
        files_out: int,
        dirty: bool,
        head: Position,
        append_block: int,
        activity_bytes: int,
        files_in: int,
        new_cartridge: bool = False,
    ) -> Exchange:
        """Unmount the volume in a drive, unload it, have the robot put it away and fetch
        another, load and mount that one (`files_out`/`files_in` files in their indexes)."""
        after_unmount = INDEX_POSITION if dirty else head
        status = self.library.element_status_seconds
        return Exchange(
            unmount=self.unmount(files_out, dirty=dirty, head=head, append_block=append_block),
            unload=self.unload(after_unmount, activity_bytes),
            robot=2 * (status + self.robot_move()),
            load=self.load(new_cartridge=new_cartridge),
            mount=self.mount(files_in),
        )

    def inventory(self, slots: int) -> float:
        return self.library.inventory_base_seconds + slots * self.library.inventory_per_slot_seconds

    def blocks_for(self, nbytes: int) -> int:
        return max(1, math.ceil(nbytes / BLOCK_SIZE)) if nbytes > 0 else 0


def timing_for(generation: int, form: str = "FH") -> TimingModel:
    """The cost model of a drive of this generation and form factor."""
    return TimingModel(profile=profile_for(generation, form))
