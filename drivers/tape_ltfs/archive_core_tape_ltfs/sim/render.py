"""The virtual library in the real tools' text: mtx status, mt status, sg_inq, sg_logs, ltfs."""

from __future__ import annotations

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.parse import mt as mt_text
from archive_core_tape_ltfs.parse.sg import TAPE_ALERT_NAMES
from archive_core_tape_ltfs.sim.state import SimCartridge, SimDrive, SimState

DENSITY_CODES = {5: 0x58, 6: 0x5A, 7: 0x5C, 8: 0x5E, 9: 0x60, 10: 0x62}
_MEDIA_DENSITY = {media: code for code, media in mt_text.DENSITY_MEDIA.items()}


def density_code(cartridge: SimCartridge) -> int:
    """The density code of the format the cartridge holds (M8: an LTO-7 cartridge in LTO-8's
    9 TB format); a cleaning cartridge has none."""
    if cartridge.cleaning:
        return 0
    return _MEDIA_DENSITY.get(cartridge.media_code) or DENSITY_CODES.get(cartridge.generation, 0)


def banner(drive: SimDrive) -> str:
    """The inquiry line sg_logs prints before a page it read from a device."""
    return f"    {drive.vendor:<8}  {drive.model:<16}  {drive.revision}"


def visible_barcode(state: SimState, key: str | None) -> str | None:
    """The barcode the robot's scanner reads, or None (no label, unreadable, or not scanned
    again since the door was open)."""
    if key is None or not state.inventory_valid:
        return None
    cartridge = state.cartridges[key]
    return cartridge.label if cartridge.label_readable else None


def mtx_status(state: SimState) -> str:
    ie = sum(1 for s in state.slots if s.import_export)
    lines = [
        f"  Storage Changer {state.changer_name}:{len(state.drives)} Drives, "
        f"{len(state.slots)} Slots ( {ie} Import/Export )"
    ]
    for drive in state.drives:
        if drive.cartridge is None:
            lines.append(f"Data Transfer Element {drive.index}:Empty")
            continue
        source = (
            f"Storage Element {drive.source_slot}"
            if drive.source_slot is not None
            else "Unknown Storage Element"
        )
        tag = visible_barcode(state, drive.cartridge)
        suffix = f":VolumeTag = {tag}" if tag else ""
        lines.append(f"Data Transfer Element {drive.index}:Full ({source} Loaded){suffix}")
    for slot in state.slots:
        kind = " IMPORT/EXPORT" if slot.import_export else ""
        if slot.cartridge is None:
            lines.append(f"      Storage Element {slot.number}{kind}:Empty")
            continue
        tag = visible_barcode(state, slot.cartridge)
        lines.append(
            f"      Storage Element {slot.number}{kind}:Full "
            + (f":VolumeTag={tag}" if tag else "")
        )
    return "\n".join(lines) + "\n"


def mt_status(state: SimState, drive: SimDrive, now: float) -> str:
    """`mt -f /dev/nstN status` (mt-st 1.x layout) at time `now`."""
    if drive.cartridge is None or not drive.threaded:
        bits = mt_text.DR_OPEN | 0x00010000
        position = "File number=-1, block number=-1, partition=0."
        density = "Density code 0x0 (default)."
    else:
        cartridge = state.cartridges[drive.cartridge]
        # A drive out of service never comes online.
        ready = now >= drive.ready_at and not drive.hung and not drive.dead
        bits = 0x00010000
        if ready:
            bits |= mt_text.ONLINE
        if drive.partition == 0 and drive.block == 0:
            bits |= mt_text.BOT
        if cartridge.write_protected:
            bits |= mt_text.WR_PROT
        position = f"File number=0, block number={drive.block}, partition={drive.partition}."
        code = density_code(cartridge)
        name = f"LTO-{cartridge.generation}"
        if not code:
            name = "default"
        elif cartridge.generation > 9:
            name = "no translation"  # mt-st's density table ends at LTO-9
        density = f"Density code 0x{code:x} ({name})."
    return (
        "SCSI 2 tape drive:\n"
        f"{position}\n"
        f"Tape block size 0 bytes. {density}\n"
        "Soft error count since last status=0\n"
        f"General status bits on ({bits:x}):\n"
        f" {' '.join(mt_text.flag_names(bits))}\n"
    )


def sg_inq(drive: SimDrive) -> str:
    """`sg_inq /dev/sgN` for a tape drive (sg3-utils 1.4x layout, serial from VPD 0x80)."""
    return (
        "standard INQUIRY:\n"
        "  PQual=0  PDT=1  RMB=1  LU_CONG=0  hot_pluggable=0  version=0x06  [SPC-4]\n"
        "  [AERC=0]  [TrmTsk=0]  NormACA=0  HiSUP=0  Resp_data_format=2\n"
        "    length=96 (0x60)   Peripheral device type: tape\n"
        f" Vendor identification: {drive.vendor:<8}\n"
        f" Product identification: {drive.model:<16}\n"
        f" Product revision level: {drive.revision}\n"
        f" Unit serial number: {drive.serial}\n"
    )


def inquiry_hex(drive: SimDrive) -> str:
    """The standard INQUIRY response bytes of the drive, as `sg_inq --inhex` reads them."""
    data = bytearray(96)
    data[0], data[1], data[2], data[3], data[4] = 0x01, 0x80, 0x06, 0x02, 91
    data[8:16] = f"{drive.vendor:<8}".encode()[:8]
    data[16:32] = f"{drive.model:<16}".encode()[:16]
    data[32:36] = f"{drive.revision:<4}".encode()[:4]
    return " ".join(f"{b:02x}" for b in data)


def sg_logs_tape_alerts(drive: SimDrive) -> str:
    """`sg_logs -p 0x2e /dev/sgN`: the inquiry banner, then every flag with 0 or 1."""
    lines = [
        banner(drive),
        "Tape alert page (ssc-3) [0x2e]",
    ]
    for number, name in enumerate(TAPE_ALERT_NAMES, start=1):
        lines.append(f"  {name}: {1 if number in drive.alerts else 0}")
    return "\n".join(lines) + "\n"


def sg_logs_tape_alert_response(drive: SimDrive) -> str:
    """`sg_logs -p 0x12 /dev/sgN`: LOG SENSE TapeAlert Response, the flags as a 64-bit mask.

    Reading it clears nothing (which is why PBS reads it and not page 0x2E).
    """
    lines = [
        banner(drive),
        "TapeAlert response page (ssc-3, adc-3) [0x12]",
    ]
    for row in range(8):
        cells = []
        for column in range(8):
            flag = row * 8 + column + 1
            value = 1 if flag in drive.alerts else 0
            cells.append(f"{'Flag' if column == 0 else ''}{flag:02X}h: {value}")
        lines.append("  " + "  ".join(cells))
    return "\n".join(lines) + "\n"


def tape_alert_response_hex(flags: set[int] | tuple[int, ...]) -> str:
    """LOG SENSE page 0x12 (one parameter: flags 1..64 as a bit mask, flag 1 the top bit)."""
    mask = bytearray(8)
    for flag in flags:
        if 1 <= flag <= 64:
            mask[(flag - 1) // 8] |= 0x80 >> ((flag - 1) % 8)
    page = bytes([0x12, 0, 0, 12, 0, 0, 0x03, 8]) + bytes(mask)
    return " ".join(f"{b:02x}" for b in page)


def tape_alert_page_hex(flags: set[int] | list[int]) -> str:
    """LOG SENSE page 0x2E with all 64 parameters, as `sg_logs --in` reads it."""
    params = b"".join(bytes([0, code, 0x03, 1, 1 if code in flags else 0]) for code in range(1, 65))
    page = bytes([0x2E, 0, len(params) >> 8, len(params) & 0xFF]) + params
    return " ".join(f"{b:02x}" for b in page)


def tapeinfo(state: SimState, drive: SimDrive, now: float) -> str:
    lines = [
        "Product Type: Tape Drive",
        f"Vendor ID: '{drive.vendor:<8}'",
        f"Product ID: '{drive.model:<16}'",
        f"Revision: '{drive.revision}'",
        "Attached Changer API: No",
        f"SerialNumber: '{drive.serial}'",
        "MinBlock: 1",
        "MaxBlock: 8388608",
    ]
    loaded = drive.cartridge is not None and drive.threaded
    ready = loaded and now >= drive.ready_at and not drive.hung
    lines.append(f"Ready: {'yes' if ready else 'no'}")
    if loaded:
        code = density_code(state.cartridges[drive.cartridge])
        lines += [f"Medium Type: 0x{code:x}", f"Density Code: 0x{code:x}", "BlockSize: 0"]
    else:
        lines.append("Medium Type: Not Loaded")
    names = {
        11: "Cleaning Media:Cannot back up or restore to a cleaning cartridge.",
        20: "    Clean Now: The tape drive neads cleaning NOW.",
        21: " Clean Periodic:The tape drive needs to be cleaned at next opportunity.",
    }
    for flag in sorted(drive.alerts):
        lines.append(f"TapeAlert[{flag}]: {names.get(flag, TAPE_ALERT_NAMES[flag - 1])}")
    return "\n".join(lines) + "\n"


def ltfs_device_list(state: SimState, sg_of: dict[int, str]) -> str:
    lines = ["Tape Device list:."]
    for drive in state.drives:
        lines.append(
            f"Device Name = {sg_of[drive.index]} (0.0.{drive.index}.0), "
            f"Vendor ID = {drive.vendor:<8}, Product ID = {drive.model:<16}, "
            f"Serial Number = {drive.serial}, Product Name =[{drive.model}]."
        )
    return "\n".join(lines) + "\n"


def sense_dump(key: str, asc: int, ascq: int) -> str:
    return (
        "mtx: Request Sense: Long Report=yes\n"
        "mtx: Request Sense: Valid Residual=no\n"
        "mtx: Request Sense: Error Code=70 (Current)\n"
        f"mtx: Request Sense: Sense Key={key}\n"
        "mtx: Request Sense: FileMark=no\n"
        "mtx: Request Sense: EOM=no\n"
        "mtx: Request Sense: ILI=no\n"
        f"mtx: Request Sense: Additional Sense Code = {asc:02X}\n"
        f"mtx: Request Sense: Additional Sense Qualifier = {ascq:02X}\n"
        "mtx: Request Sense: BPV=no\n"
        "mtx: Request Sense: Error in CDB=no\n"
        "mtx: Request Sense: SKSV=no\n"
    )


_SENSE_OF = (
    (errors.UnitAttention, ("Unit Attention", 0x28, 0x00)),
    (errors.LibraryBecomingReady, ("Not Ready", 0x04, 0x01)),
    (errors.LibraryOffline, ("Not Ready", 0x04, 0x12)),
    (errors.SourceEmpty, ("Illegal Request", 0x3B, 0x0E)),
    (errors.DestinationFull, ("Illegal Request", 0x3B, 0x0D)),
    (errors.UnloadRefused, ("Illegal Request", 0x53, 0x03)),
    (errors.CleaningMediaExpired, ("Unit Attention", 0x30, 0x03)),
    (errors.ChangerHardwareError, ("Hardware Error", 0x40, 0x01)),
)


def mtx_failure_stderr(error: errors.TapeError, *, command: str, status_first: bool) -> str:
    """What mtx prints on stderr when the library answers a command with `error`'s sense."""
    for cls, (key, asc, ascq) in _SENSE_OF:
        if isinstance(error, cls):
            dump = sense_dump(key, asc, ascq)
            if command == "status":
                tail = "READ ELEMENT STATUS Command Failed\n"
            elif command in ("load", "unload", "transfer"):
                tail = "MOVE MEDIUM from Element Address 4097 to 256 Failed\n"
            else:
                tail = ""
            noise = "Mode sense (0x1A) for Page 0x1D failed\n" if status_first else ""
            return noise + dump + tail
    return f"mtx: {error.message}\n"
