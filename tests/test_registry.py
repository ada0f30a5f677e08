"""Driver discovery: listing without importing, isolated loading, failures kept as states."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive_core.driver import API_VERSION, Capability
from archive_core.errors import DriverUnavailable, DuplicateDriver
from archive_core.hooks import Hooks, hookimpl
from archive_core.registry import (
    DISABLE_DRIVERS_ENV,
    LOAD_DRIVERS_ENV,
    STRICT_DRIVERS_ENV,
    DriverEntry,
    DriverRegistry,
    DriverStatus,
    default_registry,
    reset_default_registry,
)
from tests.fakedist import (
    FakeSite,
    driver_source,
    fake_site,
    run_python,
    run_python_json,
    write_distribution,
)

GOOD = "FakeDriver"


@pytest.fixture
def site() -> Iterator[FakeSite]:
    with fake_site() as made:
        yield made


def good(name: str, **metadata: str) -> tuple[str, str]:
    return driver_source(name=name, **metadata), GOOD


def registry_for(site: FakeSite, **environ: str) -> DriverRegistry:
    return DriverRegistry(group=site.driver_group, environ=environ)


# --- real distributions in a real process, found through archive_core.drivers ---------------


def install_real(site_dir: Path, dist: str, version: str, name: str, module: str, source: str):
    write_distribution(
        site_dir,
        name=dist,
        version=version,
        entry_points={"archive_core.drivers": {name: f"{module}.driver:{GOOD}"}},
        files={f"{module}/__init__.py": "", f"{module}/driver.py": source},
    )


def test_third_party_distribution_is_discovered_and_loaded_by_the_default_registry(
    tmp_path: Path,
):
    install_real(tmp_path, "acme-archive-s3", "1.2", "s3", "acme_s3", driver_source(name="s3"))
    found = run_python_json(
        """
        import json
        from archive_core.registry import default_registry
        registry = default_registry()
        entry = next(e for e in registry.entries() if e.name == "s3")
        cls = registry.load("s3")
        state = registry.state("s3")
        print(json.dumps({
            "entry": [entry.name, entry.distribution, entry.version, entry.value],
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "status": state.status, "api_version": state.api_version,
            "capabilities": sorted(state.capabilities),
        }))
        """,
        site_dirs=[tmp_path],
    )
    assert found == {
        "entry": ["s3", "acme-archive-s3", "1.2", "acme_s3.driver:FakeDriver"],
        "class": "acme_s3.driver.FakeDriver",
        "status": "loaded",
        "api_version": API_VERSION,
        "capabilities": ["archive", "restore"],
    }


def test_listing_drivers_imports_no_driver_module(tmp_path: Path):
    install_real(tmp_path, "acme-archive-s3", "1.2", "s3", "acme_s3", driver_source(name="s3"))
    install_real(
        tmp_path, "acme-tape", "0.3", "tape", "acme_tape", "raise RuntimeError('imported')\n"
    )
    found = run_python_json(
        """
        import json, sys
        from archive_core.registry import default_registry
        registry = default_registry()
        names = [e.name for e in registry.entries()]
        states = {s.name: s.status for s in registry.states(load=False)}
        imported = sorted(m for m in sys.modules if m.startswith(("acme_", "stevedore")))
        print(json.dumps({"names": names, "states": states, "imported": imported}))
        """,
        site_dirs=[tmp_path],
    )
    assert {"s3", "tape"} <= set(found["names"])
    assert found["states"]["s3"] == found["states"]["tape"] == "installed"
    assert found["imported"] == []


def test_environment_allow_and_deny_lists_decide_which_drivers_load(tmp_path: Path):
    for dist, name in [("acme-s3", "s3"), ("acme-tape", "tape"), ("acme-nas", "nas")]:
        install_real(tmp_path, dist, "1.0", name, f"acme_{name}", driver_source(name=name))
    code = """
        import json, sys
        from archive_core.errors import DriverUnavailable
        from archive_core.registry import default_registry
        registry = default_registry()
        states = {s.name: [s.status, s.reason] for s in registry.states()
                  if s.name in ("s3", "tape", "nas", "ghost")}
        try:
            registry.load("tape")
            refused = None
        except DriverUnavailable as exc:
            refused = exc.reason
        imported = sorted(m for m in sys.modules if m.startswith("acme_"))
        print(json.dumps({"states": states, "refused": refused, "imported": imported}))
    """
    allowed = run_python_json(
        code, site_dirs=[tmp_path], env={LOAD_DRIVERS_ENV: " s3 , nas,,ghost "}
    )
    assert allowed["states"]["s3"][0] == allowed["states"]["nas"][0] == "loaded"
    assert allowed["states"]["tape"][0] == "disabled"
    assert LOAD_DRIVERS_ENV in allowed["states"]["tape"][1]
    assert allowed["states"]["ghost"][0] == "not installed"
    assert allowed["refused"] == allowed["states"]["tape"][1]
    assert "acme_tape" not in allowed["imported"]

    denied = run_python_json(code, site_dirs=[tmp_path], env={DISABLE_DRIVERS_ENV: "tape"})
    assert denied["states"]["s3"][0] == denied["states"]["nas"][0] == "loaded"
    assert denied["states"]["tape"] == [
        "disabled",
        f"driver 'tape' is disabled by {DISABLE_DRIVERS_ENV}",
    ]
    assert "ghost" not in denied["states"]
    assert "acme_tape" not in denied["imported"]


def test_strict_mode_raises_for_broken_and_duplicate_drivers_instead_of_recording(
    tmp_path: Path,
):
    install_real(tmp_path, "acme-good", "1.0", "good", "acme_good", driver_source(name="good"))
    install_real(tmp_path, "acme-broken", "1.0", "broken", "acme_broken", "import boto3_absent\n")
    install_real(tmp_path, "acme-dup", "1.0", "dup", "acme_dup_a", driver_source(name="dup"))
    install_real(tmp_path, "other-dup", "2.0", "dup", "acme_dup_b", driver_source(name="dup"))
    code = """
        import json
        from archive_core.registry import default_registry
        registry = default_registry()
        raised = {}
        for name in ("good", "broken", "dup"):
            try:
                raised[name] = registry.state(name).status
            except Exception as exc:
                raised[name] = type(exc).__name__
        try:
            registry.states()
            raised["states"] = "returned"
        except Exception as exc:
            raised["states"] = type(exc).__name__
        print(json.dumps(raised))
    """
    strict = run_python_json(code, site_dirs=[tmp_path], env={STRICT_DRIVERS_ENV: "1"})
    assert strict == {
        "good": "loaded",
        "broken": "DriverUnavailable",
        "dup": "DuplicateDriver",
        "states": "DriverUnavailable",  # "broken" sorts first
    }
    lenient = run_python_json(code, site_dirs=[tmp_path])
    assert lenient == {
        "good": "loaded",
        "broken": "failed",
        "dup": "duplicate",
        "states": "returned",
    }


def test_loading_a_driver_writes_no_entry_point_cache_under_the_home_directory(tmp_path: Path):
    # stevedore's own listing caches every group in $XDG_CACHE_HOME; Portal's user may not own
    # its home, and the registry hands stevedore the registration it chose instead.
    install_real(tmp_path, "acme-archive-s3", "1.2", "s3", "acme_s3", driver_source(name="s3"))
    cache = tmp_path / "cache"
    cache.mkdir()
    found = run_python_json(
        """
        import json
        from archive_core.registry import default_registry
        print(json.dumps(default_registry().state("s3").status))
        """,
        site_dirs=[tmp_path],
        env={"XDG_CACHE_HOME": str(cache), "HOME": str(tmp_path)},
    )
    assert found == "loaded"
    assert list(cache.iterdir()) == []


def test_driver_module_import_failure_is_logged_with_its_reason(tmp_path: Path):
    install_real(tmp_path, "acme-broken", "1.0", "broken", "acme_broken", "import boto3_absent\n")
    result = run_python(
        """
        import logging
        logging.basicConfig(level=logging.INFO)
        from archive_core.registry import default_registry
        print(default_registry().state("broken").status)
        """,
        site_dirs=[tmp_path],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "failed"
    assert (
        "driver 'broken' from distribution 'acme-broken 1.0' failed to import: "
        "ModuleNotFoundError: No module named 'boto3_absent'" in result.stderr
    )
    # One line for the admin; the traceback only for whoever asks for debug logs.
    assert "Traceback" not in result.stderr
    debug = run_python(
        """
        import logging
        logging.basicConfig(level=logging.DEBUG)
        from archive_core.registry import default_registry
        default_registry().state("broken")
        """,
        site_dirs=[tmp_path],
    )
    assert "Traceback" in debug.stderr and "boto3_absent" in debug.stderr


# --- loading in isolation ---------------------------------------------------------------------


def test_driver_that_fails_to_import_is_a_failed_state_while_a_good_driver_loads(site):
    site.install("acme-good", version="2.0", modules={"good": good("good")})
    site.install("acme-broken", version="1.2", modules={"broken": ("import boto3_absent\n", GOOD)})
    registry = registry_for(site)

    with pytest.raises(DriverUnavailable) as refused:
        registry.load("broken")
    reason = (
        "driver 'broken' from distribution 'acme-broken 1.2' failed to import: "
        "ModuleNotFoundError: No module named 'boto3_absent'"
    )
    assert refused.value.reason == reason
    assert refused.value.driver == "broken"
    assert str(refused.value) == "D" + reason[1:]
    assert registry.load("good").name == "good"
    states = {s.name: s for s in registry.states()}
    assert states["broken"].status is DriverStatus.FAILED
    assert states["broken"].reason == reason
    assert states["good"].status is DriverStatus.LOADED
    assert states["good"].ok and not states["broken"].ok


@pytest.mark.parametrize(
    "source",
    [
        "raise RuntimeError('cannot reach the licence server')\n",
        "import sys\nsys.exit(3)\n",
        "assert False, 'driver asserts at import'\n",
        "def broken(:\n",
    ],
    ids=["runtime-error", "system-exit", "assertion", "syntax-error"],
)
def test_any_exception_while_importing_a_driver_becomes_its_failed_state(site, source):
    site.install("acme-bad", modules={"bad": (source, GOOD)})
    site.install("acme-good", modules={"good": good("good")})
    registry = registry_for(site)

    states = {s.name: s for s in registry.states()}

    assert states["bad"].status is DriverStatus.FAILED
    assert states["bad"].reason.startswith(
        "driver 'bad' from distribution 'acme-bad 1.0' failed to import: "
    )
    assert states["good"].status is DriverStatus.LOADED


def test_driver_is_imported_once_and_a_failure_is_not_retried(site, tmp_path):
    imports = tmp_path / "imports.log"
    counter = f"open({str(imports)!r}, 'a').write(__name__ + '\\n')\n"
    site.install("acme-good", modules={"good": (counter + driver_source(name="good"), GOOD)})
    site.install("acme-bad", modules={"bad": (counter + "raise OSError('no device')\n", GOOD)})
    registry = registry_for(site)

    first = registry.load("good")
    assert registry.load("good") is first
    for _ in range(3):
        with pytest.raises(DriverUnavailable, match="OSError: no device"):
            registry.load("bad")
    registry.states()

    assert sorted(imports.read_text().split()) == sorted(
        [site.module("acme-good_good"), site.module("acme-bad_bad")]
    )


def test_api_version_mismatch_is_refused_with_reason(site):
    newer = API_VERSION + 1
    site.install("acme-next", version="3.0", modules={"next": good("next", api_version=f"{newer}")})
    registry = registry_for(site)

    with pytest.raises(DriverUnavailable) as refused:
        registry.load("next")

    assert refused.value.reason == (
        f"driver 'next' from distribution 'acme-next 3.0' was refused: it implements driver API "
        f"version {newer}, but this archive-core implements version {API_VERSION}"
    )
    state = registry.state("next")
    assert state.status is DriverStatus.FAILED
    assert state.api_version == newer


def test_wrong_driver_metadata_is_refused_naming_every_problem_at_once(site):
    source = """
        class FakeDriver:
            name = "other"
            api_version = "1"
            capabilities = frozenset({"archive", "teleport"})
            Config = dict
    """
    site.install("acme-odd", modules={"odd": (source, GOOD)})
    registry = registry_for(site)

    with pytest.raises(DriverUnavailable) as refused:
        registry.load("odd")

    reason = refused.value.reason
    assert reason.startswith("driver 'odd' from distribution 'acme-odd 1.0' was refused: ")
    assert "declares name 'other', but it is registered as 'odd'" in reason
    assert "api_version must be an int, not '1'" in reason
    assert "unknown capabilities 'teleport'" in reason
    assert "Config must be an attrs class" in reason


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("FakeDriver = 42\n", "is a int, not a driver class"),
        (driver_source(name="x", capabilities="'archive'"), "capabilities must be a collection"),
        (driver_source(name="x", capabilities="None"), "capabilities must be a collection"),
        (driver_source(name="x", api_version="True"), "api_version must be an int"),
    ],
    ids=["not-a-class", "capabilities-string", "capabilities-missing", "api-version-bool"],
)
def test_driver_declaring_malformed_metadata_is_refused(site, source, problem):
    site.install("acme-x", modules={"x": (source, GOOD)})

    state = registry_for(site).state("x")

    assert state.status is DriverStatus.FAILED
    assert problem in state.reason


def test_capabilities_may_be_declared_as_strings_and_are_reported_as_capabilities(site):
    caps = "['archive', 'verify', Capability.BULK]"
    site.install("acme-caps", modules={"caps": good("caps", capabilities=caps)})

    state = registry_for(site).state("caps")

    assert state.status is DriverStatus.LOADED
    assert state.capabilities == {Capability.ARCHIVE, Capability.VERIFY, Capability.BULK}
    assert state.reason == "loaded from distribution 'acme-caps 1.0'"


def test_unknown_driver_is_unavailable_with_reason_naming_the_installed_drivers(site):
    site.install("acme-s3", modules={"s3": good("s3")})
    registry = registry_for(site)

    with pytest.raises(DriverUnavailable) as refused:
        registry.load("s4")

    assert refused.value.reason == (
        f"no installed distribution registers driver 's4' in entry-point group "
        f"{site.driver_group!r} (installed drivers: s3)"
    )
    state = registry.state("s4")
    assert state.status is DriverStatus.NOT_INSTALLED
    assert state.entry is None


# --- duplicates -------------------------------------------------------------------------------


def test_duplicate_driver_name_names_both_distributions_and_other_drivers_keep_working(site):
    site.install("acme-s3", version="1.0", modules={"s3": good("s3")})
    site.install("other-s3", version="2.5", modules={"s3": good("s3")})
    site.install("acme-nas", modules={"nas": good("nas")})
    registry = registry_for(site)

    with pytest.raises(DriverUnavailable) as refused:
        registry.load("s3")

    assert isinstance(refused.value.__cause__, DuplicateDriver)
    assert refused.value.__cause__.distributions == ("acme-s3 1.0", "other-s3 2.5")
    assert "acme-s3 1.0, other-s3 2.5" in refused.value.reason
    assert f"{DISABLE_DRIVERS_ENV}=s3@other-s3" in refused.value.reason
    state = registry.state("s3")
    assert state.status is DriverStatus.DUPLICATE
    assert [e.distribution for e in state.conflicts] == ["acme-s3", "other-s3"]
    assert registry.load("nas").name == "nas"
    assert site.imported() == {site.module("acme-nas_nas")}  # neither s3 was imported


@given(
    dists=st.lists(
        st.from_regex(r"[a-z][a-z0-9]{0,8}(-[a-z0-9]{1,6})?", fullmatch=True),
        min_size=2,
        max_size=4,
        unique_by=lambda d: d.replace("-", ""),
    ),
    version=st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}", fullmatch=True),
)
@settings(max_examples=25, deadline=None)
def test_duplicate_detection_names_every_distribution_that_registers_the_name(dists, version):
    with fake_site() as site:
        for dist in dists:
            site.install(dist, version=version, modules={"dup": good("dup")})

        state = registry_for(site).state("dup")

    assert state.status is DriverStatus.DUPLICATE
    for dist in dists:
        assert f"{dist} {version}" in state.reason
    assert {e.distribution for e in state.conflicts} == set(dists)


def test_denying_one_distribution_of_a_duplicate_name_loads_the_other(site):
    site.install("acme-s3", modules={"s3": good("s3")})
    site.install("Other_S3", modules={"s3": good("s3")})
    registry = registry_for(site, **{DISABLE_DRIVERS_ENV: "s3@other-s3"})

    loaded = registry.load("s3")

    assert loaded.__module__ == site.module("acme-s3_s3")
    assert registry.state("s3").entry == DriverEntry(
        name="s3", distribution="acme-s3", version="1.0", value=f"{loaded.__module__}:{GOOD}"
    )
    assert site.imported() == {loaded.__module__}  # the denied twin was never imported


def test_allowing_one_distribution_of_a_duplicate_name_loads_that_one(site):
    site.install("acme-s3", modules={"s3": good("s3")})
    site.install("other-s3", modules={"s3": good("s3")})
    registry = registry_for(site, **{LOAD_DRIVERS_ENV: "s3@other-s3"})

    assert registry.load("s3").__module__ == site.module("other-s3_s3")


def test_strict_mode_raises_duplicate_driver_itself(site):
    site.install("acme-s3", modules={"s3": good("s3")})
    site.install("other-s3", modules={"s3": good("s3")})
    registry = registry_for(site, **{STRICT_DRIVERS_ENV: "true"})

    with pytest.raises(DuplicateDriver) as raised:
        registry.load("s3")

    assert raised.value.distributions == ("acme-s3 1.0", "other-s3 1.0")


# --- allow and deny lists ---------------------------------------------------------------------

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)


@given(
    installed=st.sets(NAMES, min_size=1, max_size=6),
    allow=st.none() | st.sets(NAMES, max_size=4),
    deny=st.sets(NAMES, max_size=4),
    padding=st.sampled_from(["", " ", "  ", "\t"]),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_allow_and_deny_lists_decide_every_drivers_status(installed, allow, deny, padding):
    def listed(names: set[str]) -> str:
        return ",".join(f"{padding}{n}{padding}" for n in sorted(names)) + ","

    environ = {DISABLE_DRIVERS_ENV: listed(deny)}
    if allow:
        environ[LOAD_DRIVERS_ENV] = listed(allow)
    with fake_site() as site:
        # The modules do not exist: listing must decide everything without importing.
        write_distribution(
            site.path,
            name="acme-many",
            entry_points={site.driver_group: {n: f"absent_{n}:Driver" for n in installed}},
        )
        states = {s.name: s for s in registry_for(site, **environ).states(load=False)}

    expected_names = installed | (allow or set())
    assert set(states) == expected_names
    for name in expected_names:
        state = states[name]
        if name not in installed:
            assert state.status is DriverStatus.NOT_INSTALLED
            assert LOAD_DRIVERS_ENV in state.reason
        elif name in deny:
            assert state.status is DriverStatus.DISABLED
            assert state.reason == f"driver {name!r} is disabled by {DISABLE_DRIVERS_ENV}"
        elif allow and name not in allow:
            assert state.status is DriverStatus.DISABLED
            assert LOAD_DRIVERS_ENV in state.reason
        else:
            assert state.status is DriverStatus.INSTALLED


def test_disabled_driver_is_never_imported_even_when_states_load(site):
    site.install("acme-s3", modules={"s3": good("s3")})
    site.install("acme-tape", modules={"tape": good("tape")})
    registry = registry_for(site, **{DISABLE_DRIVERS_ENV: "tape"})

    statuses = {s.name: s.status for s in registry.states()}
    with pytest.raises(DriverUnavailable, match=DISABLE_DRIVERS_ENV):
        registry.load("tape")

    assert statuses == {"s3": DriverStatus.LOADED, "tape": DriverStatus.DISABLED}
    assert site.imported() == {site.module("acme-s3_s3")}


# --- caching, hooks, the process-wide registry ------------------------------------------------


def test_registry_resolves_entry_points_once_until_reset(site):
    site.install("acme-s3", modules={"s3": good("s3")})
    registry = registry_for(site)
    assert [e.name for e in registry.entries()] == ["s3"]

    site.install("acme-nas", modules={"nas": good("nas")})
    assert [e.name for e in registry.entries()] == ["s3"]
    with pytest.raises(DriverUnavailable):
        registry.load("nas")

    registry.reset()
    assert [e.name for e in registry.entries()] == ["nas", "s3"]
    assert registry.load("nas").name == "nas"


def test_load_failure_is_told_once_to_the_driver_load_failed_hook(site, caplog):
    site.install("acme-bad", modules={"bad": ("raise ImportError('no sdk')\n", GOOD)})
    site.install("acme-dup", modules={"dup": good("dup")})
    site.install("other-dup", modules={"dup": good("dup")})
    site.install("acme-good", modules={"good": good("good")})
    told: list[tuple[str, str]] = []

    class Recorder:
        @hookimpl
        def archive_core_driver_load_failed(self, name: str, reason: str) -> None:
            told.append((name, reason))

    class Crasher:
        @hookimpl
        def archive_core_driver_load_failed(self, name: str) -> None:
            raise RuntimeError(f"observer broke on {name}")

    hooks = Hooks()
    hooks.register(Recorder(), name="recorder")
    hooks.register(Crasher(), name="crasher")
    registry = DriverRegistry(group=site.driver_group, hooks=hooks, environ={})

    registry.states()
    registry.states()
    for name in ("bad", "dup"):
        with pytest.raises(DriverUnavailable):
            registry.load(name)

    assert told == [
        ("bad", registry.state("bad").reason),
        ("dup", registry.state("dup").reason),
    ]
    crashes = [r for r in caplog.records if r.name == "archive_core.hooks"]
    assert [str(r.exc_info[1]) for r in crashes] == [
        "observer broke on bad",
        "observer broke on dup",
    ]


def test_hooks_may_be_given_as_a_factory_that_is_only_called_on_failure(site):
    site.install("acme-good", modules={"good": good("good")})
    site.install("acme-bad", modules={"bad": ("raise ImportError('no sdk')\n", GOOD)})
    built: list[Hooks] = []

    def factory() -> Hooks:
        built.append(Hooks())
        return built[-1]

    registry = DriverRegistry(group=site.driver_group, hooks=factory, environ={})
    registry.load("good")
    assert built == []
    registry.state("bad")
    assert len(built) == 1


def test_default_registry_is_one_per_process_until_reset():
    first = default_registry()
    try:
        assert default_registry() is first
        assert first.group == "archive_core.drivers"
        reset_default_registry()
        assert default_registry() is not first
    finally:
        reset_default_registry()


def test_driver_state_and_entry_are_frozen_values():
    entry = DriverEntry(name="s3", distribution="acme-s3", version="1.0", value="m:C")
    assert entry.source == "acme-s3 1.0"
    with pytest.raises(AttributeError):
        entry.name = "other"  # type: ignore[misc]
    assert json.dumps(DriverStatus.NOT_INSTALLED) == '"not installed"'
