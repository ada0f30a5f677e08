"""A drive failing with several cartridges is the drive; a cartridge failing in several drives
is the cartridge; one error, or old errors, convict nothing."""

from __future__ import annotations

from archive_core_tape_ltfs.health import HealthRules, MediaFailure

DAY = 24 * 3600.0


def test_a_drive_failing_with_three_cartridges_is_taken_out_of_service():
    failures = [MediaFailure(drive=1, barcode=f"A0000{n}L9", at=n * DAY) for n in range(3)]
    verdict = HealthRules().judge(failures, now=3 * DAY)
    assert list(verdict.drives_out_of_service) == [1]
    assert "A00000L9, A00001L9, A00002L9" in verdict.drives_out_of_service[1]
    assert verdict.suspect_cartridges == {}


def test_a_cartridge_failing_in_three_drives_is_suspect():
    failures = [MediaFailure(drive=n, barcode="B00001L9", at=n) for n in range(3)]
    verdict = HealthRules().judge(failures, now=10)
    assert list(verdict.suspect_cartridges) == ["B00001L9"]
    assert "drives (0, 1, 2)" in verdict.suspect_cartridges["B00001L9"]
    assert verdict.drives_out_of_service == {}


def test_repeated_errors_of_one_pair_and_old_errors_convict_nothing():
    same_pair = [MediaFailure(drive=0, barcode="C00001L9", at=90 * DAY - n) for n in range(10)]
    old = [MediaFailure(drive=2, barcode=f"D0000{n}L9", at=0.0) for n in range(5)]
    verdict = HealthRules().judge([*same_pair, *old], now=90 * DAY)
    assert verdict.drives_out_of_service == {} and verdict.suspect_cartridges == {}
