"""A simulated drive's answers to the SCSI commands sg3-utils sends, in sg3-utils' words.

- TEST UNIT READY (`sg_turs -v`): exit 0 when ready; else exit 2, the fixed-format sense on
  stderr as `sg_get_sense_str` decodes it, and on stdout `device not ready`, or the estimate
  sg_turs prints for "becoming ready" with an INFO field (`check_for_lu_becoming`);
- any other command refused with sense data (a drive out of service refuses them all);
- LOG SENSE page 0x11, DT device status (`sg_logs -p 0x11`), and READ ATTRIBUTE, the cartridge
  memory (`sg_read_attr`), each with the response bytes the real binaries decode to the same
  text (`--in`), which is how the texts here are checked.
"""

from __future__ import annotations

from archive_core_tape_ltfs.model import (
    ALERT_CLEANING_REQUESTED,
    ALERT_CLEANING_REQUIRED,
    DriveState,
    DriveStatus,
)
from archive_core_tape_ltfs.parse import mam, turs
from archive_core_tape_ltfs.sim.render import banner, density_code
from archive_core_tape_ltfs.sim.state import SimCartridge, SimDrive

NOT_READY_EXIT = 2  # sg3-utils' exit status for the "not ready" sense category
_CAUSE_NOT_REPORTABLE = (0x04, 0x00)
MEDIUM_NOT_PRESENT = (turs.MEDIUM_NOT_PRESENT_ASC, 0x00)
# sg_turs prints an estimate only for an INFO field in (0, 0x1000000) milliseconds.
_MAX_ESTIMATE_MS = 0x1000000

# The sense a drive answers TEST UNIT READY with in each state that is not READY. Unloading is
# "operation in progress": the drive will not become ready, the DT device activity says why.
_STATE_SENSE = {
    DriveState.EMPTY: MEDIUM_NOT_PRESENT,
    DriveState.LOADING: turs.BECOMING_READY,
    DriveState.CALIBRATING: turs.BECOMING_READY,
    DriveState.UNLOADING: turs.OPERATION_IN_PROGRESS,
    DriveState.CLEANING: turs.CLEANING_CARTRIDGE,
    DriveState.OUT_OF_SERVICE: turs.MANUAL_INTERVENTION,
    DriveState.NOT_READY: _CAUSE_NOT_REPORTABLE,
}
_SENSE_TEXTS = {code: text for text, code in turs.SENSE_CODES.items()}


def _progress(fraction: float) -> str:
    """A progress indication as sg3-utils prints the 16-bit field (`pr.rem%`)."""
    value = min(0xFFFF, max(0, int(fraction * 65536)))
    return f"{value * 100 // 65536}.{(value * 100 % 65536) // 656:02d}%"


def sense_text(
    leadin: str,
    code: tuple[int, int],
    *,
    info: int | None = None,
    progress: float | None = None,
) -> str:
    """A NOT READY sense with `code` (ASC, ASCQ) as sg3-utils prints it after `leadin`."""
    lines = [
        f"{leadin}:",
        "Fixed format, current; Sense key: Not Ready",
        f"Additional sense: {_SENSE_TEXTS[code]}",
    ]
    if info is not None:
        lines.append(f"  Info fld=0x{info:x} [{info}] ")
    if progress is not None:
        lines.append(f"  Progress indication: {_progress(progress)}")
    return "\n".join(lines) + "\n"


def unit_ready(status: DriveStatus, *, progress: float | None) -> tuple[int, str, str]:
    """`sg_turs -v` (exit status, stdout, stderr) for a drive in `status`; `progress` is how
    far a long operation (calibration, cleaning, unloading) has got, 0..1."""
    if status.state is DriveState.READY:
        return 0, "", ""
    code = _STATE_SENSE[status.state]
    info = None
    if code == turs.BECOMING_READY and status.seconds_left:
        # T10 20-061r2: the INFO field of "becoming ready" holds the milliseconds to ready.
        info = min(round(status.seconds_left * 1000), 0xFFFFFFFF)
    shown = progress if status.state.busy and status.state is not DriveState.LOADING else None
    stderr = "    test unit ready cdb: 00 00 00 00 00 00 \n" + sense_text(
        "test unit ready", code, info=info, progress=shown
    )
    if info is not None and 0 < info < _MAX_ESTIMATE_MS:
        return (
            NOT_READY_EXIT,
            f"device not ready, estimated to be ready in {info} milliseconds\n",
            stderr,
        )
    return NOT_READY_EXIT, "device not ready\n", stderr


def refused(leadin: str, code: tuple[int, int] = turs.MANUAL_INTERVENTION) -> tuple[int, str, str]:
    """A command the drive refuses with a NOT READY sense: every command of a drive out of
    service (it needs an operator, 04/03), or one that needs a cartridge of an empty drive."""
    return NOT_READY_EXIT, "", sense_text(leadin, code)


# --- LOG SENSE page 0x11: DT device status -----------------------------------------------------

# DT device activity codes (SSC-4 table "DT device activity values"; sg_logs' wording).
_ACTIVITIES = {
    DriveState.CLEANING: (0x01, "Cleaning operation in progress"),
    DriveState.LOADING: (0x02, "Volume is being loaded"),
    DriveState.UNLOADING: (0x03, "Volume is being unloaded"),
    DriveState.CALIBRATING: (0x0B, "Calibrating"),
}
_IDLE = (0x00, "No DT device activity")
_VHF_BITS = (
    ("PAMR", "HUI", "MACC", "CMPR", "WRTP", "CRQST", "CRQRD", "DINIT"),
    ("INXTN", None, "RAA", "MPRSNT", None, "MSTD", "MTHRD", "MOUNTED"),
    None,  # the DT device activity byte
    ("VS", None, "TDDEC", "EPP", "ESR", "RRQST", "INTFC", "TAFC"),
)


def _very_high_frequency(drive: SimDrive, status: DriveStatus) -> bytes:
    """The VHF data parameter (0000h) of page 0x11: four bytes of flags and the activity."""
    loaded = drive.cartridge is not None
    on = {
        "WRTP": status.write_protected,
        "CRQST": ALERT_CLEANING_REQUESTED in drive.alerts,
        "CRQRD": ALERT_CLEANING_REQUIRED in drive.alerts,
        # The device has not finished with the medium yet (loading, calibrating, unloading).
        "DINIT": status.state in (DriveState.LOADING, DriveState.CALIBRATING, DriveState.UNLOADING),
        "RAA": True,  # robotic access allowed
        "MPRSNT": loaded,
        "MTHRD": loaded and drive.threaded,
        "MOUNTED": status.state is DriveState.READY and loaded,
    }
    data = bytearray(4)
    for index, names in enumerate(_VHF_BITS):
        if names is None:
            data[index] = _ACTIVITIES.get(status.state, _IDLE)[0]
            continue
        for bit, name in enumerate(names):
            if name is not None and on.get(name):
                data[index] |= 0x80 >> bit
    return bytes(data)


def device_status_hex(drive: SimDrive, status: DriveStatus) -> str:
    """LOG SENSE page 0x11 with its VHF data parameter, as `sg_logs --in` reads it."""
    vhf = _very_high_frequency(drive, status)
    page = bytes([0x11, 0, 0, 4 + len(vhf), 0, 0, 0x03, len(vhf)]) + vhf
    return " ".join(f"{b:02x}" for b in page)


def device_status_page(drive: SimDrive, status: DriveStatus) -> str:
    """`sg_logs -p 0x11 /dev/sgN`: the inquiry banner, then the page as sg_logs decodes it."""
    vhf = _very_high_frequency(drive, status)

    def flags(index: int) -> str:
        names = _VHF_BITS[index]
        assert names is not None
        return " ".join(
            f"{name}={1 if vhf[index] & (0x80 >> bit) else 0}"
            for bit, name in enumerate(names)
            if name is not None
        )

    activity = _ACTIVITIES.get(status.state, _IDLE)[1]
    lines = [
        banner(drive),
        "DT device status page (ssc-3, adc-3) [0x11]",
        "  Very high frequency data:",
        f"  {flags(0)}",
        f"  {flags(1)}",
        f"  DT device activity: {activity}",
        f"  {flags(3)}",
    ]
    return "\n".join(lines) + "\n"


# --- READ ATTRIBUTE: the cartridge memory ----------------------------------------------------

MANUFACTURER = "SIMTAPE"
_ASCII, _BINARY = 0x01, 0x00
_READ_ONLY = 0x80  # set by the manufacturer, never by an application


def _attributes(cartridge: SimCartridge) -> list[tuple[int, int, bytes, str, str]]:
    """(identifier, format byte, value bytes, name, printed value) of each MAM attribute."""
    found = [
        (
            0x0400,
            _READ_ONLY | _ASCII,
            f"{MANUFACTURER:<8}".encode(),
            "Medium manufacturer",
            f"{MANUFACTURER:<8}",
        )
    ]
    if not cartridge.cleaning:
        code = density_code(cartridge)
        found.append(
            (0x0405, _READ_ONLY | _BINARY, bytes([code]), "Medium density code", f"0x{code:x}")
        )
    kind = (
        mam.MEDIUM_CLEANING
        if cartridge.cleaning
        else mam.MEDIUM_WORM
        if cartridge.worm
        else mam.MEDIUM_DATA
    )
    found.append((0x0408, _READ_ONLY | _BINARY, bytes([kind]), "Medium type", f"0x{kind:x}"))
    barcode = cartridge.volume.mam_barcode if cartridge.volume is not None else ""
    if barcode:
        # LTFS writes the barcode attribute (0806h) when it formats the cartridge.
        padded = f"{barcode:<32}"
        found.append((0x0806, _ASCII, padded.encode(), "Barcode", padded))
    return found


def read_attributes_hex(cartridge: SimCartridge) -> str:
    """READ ATTRIBUTE (attribute values) response bytes, as `sg_read_attr --in` reads them."""
    body = b"".join(
        ident.to_bytes(2, "big") + bytes([form]) + len(value).to_bytes(2, "big") + value
        for ident, form, value, _name, _shown in _attributes(cartridge)
    )
    return " ".join(f"{b:02x}" for b in len(body).to_bytes(4, "big") + body)


def read_attributes(cartridge: SimCartridge) -> str:
    """`sg_read_attr /dev/sgN`: one `  <name>: <value>` line per attribute."""
    lines = ["Attribute values:"]
    lines += [f"  {name}: {shown}" for _id, _form, _value, name, shown in _attributes(cartridge)]
    return "\n".join(lines) + "\n"
