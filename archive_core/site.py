"""One site at run time: its config, driver instances built lazily, catalog, hooks, readiness.

A target whose driver fails to import or whose settings do not validate becomes a recorded
state with a reason; only the policies that use it are affected.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import attrs

from archive_core.driver import (
    Capability,
    DriverContext,
    declared_capabilities,
    describe_config,
    driver_scheme,
)
from archive_core.errors import (
    ArchiveCoreError,
    CapabilityNotDeclared,
    CatalogError,
    DriverUnavailable,
    PolicyNotFound,
)
from archive_core.model import Readiness
from archive_core.policies import BulkLimits, Policy, SiteConfig, Target, structure

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class TargetHandle:
    """A usable driver instance for one target."""

    name: str
    driver_name: str
    scheme: str
    capabilities: frozenset[Capability]
    instance: Any = attrs.field(repr=False)

    def declares(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def require(self, capability: Capability, *, policy: str) -> None:
        if capability not in self.capabilities:
            raise CapabilityNotDeclared(
                driver=self.driver_name, policy=policy, capability=capability.value
            )


@attrs.frozen(kw_only=True)
class PolicyReadiness:
    policy: Policy
    readiness: Readiness


class Site:
    """Everything one configuration needs at run time, shared by all calls of a worker."""

    def __init__(
        self,
        config: SiteConfig,
        *,
        registry: Any = None,
        hooks: Any = None,
        catalog: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._registry = registry
        self._hooks = hooks
        self._catalog = catalog
        self._clock = clock
        self._lock = threading.RLock()
        # target -> its driver instance, or why there is none and since when (retried)
        self._handles: dict[str, TargetHandle] = {}
        self._unusable: dict[str, tuple[float, DriverUnavailable]] = {}
        self._checks: dict[str, tuple[float, Future]] = {}
        self._ready_cache: dict[str, tuple[float, Readiness]] = {}
        self._config_noted = False  # by the audit trail, at this site's first job

    # --- shared services, built on first use -------------------------------------------------

    @property
    def registry(self):
        if self._registry is None:
            from archive_core.registry import default_registry

            self._registry = default_registry()
        return self._registry

    @property
    def hooks(self):
        if self._hooks is None:
            from archive_core.hooks import default_hooks

            self._hooks = default_hooks()
        return self._hooks

    @property
    def catalog(self):
        with self._lock:
            if self._catalog is None:
                from archive_core.catalog import Catalog

                self._catalog = Catalog(
                    self.config.catalog_url,
                    password=self.config.catalog_password,
                    lock_wait=self.config.catalog_lock_wait,
                )
            return self._catalog

    def close(self) -> None:
        with self._lock:
            for handle in self._handles.values():
                try:
                    handle.instance.close()
                except Exception:
                    log.exception("closing target %s failed", handle.name)
            self._handles.clear()
            if self._catalog is not None:
                self._catalog.close()

    # --- targets -------------------------------------------------------------------------------

    def target(self, name: str) -> TargetHandle:
        """The driver instance for target `name`; DriverUnavailable says why there is none.

        A target that could not be built is tried again once `ready_cache_seconds` have
        passed: a driver installed or fixed meanwhile, or a validator that looked at storage
        not mounted yet, must not keep the target down until Portal restarts.
        """
        with self._lock:
            handle = self._handles.get(name)
            if handle is not None:
                return handle
            failed = self._unusable.get(name)
            now = self._clock()
            if failed is None or now - failed[0] >= self.config.portal.ready_cache_seconds:
                built = self._build(name)
                if isinstance(built, TargetHandle):
                    self._handles[name] = built
                    self._unusable.pop(name, None)
                    return built
                failed = (now, built)
                self._unusable[name] = failed
        raise failed[1]

    def _build(self, name: str) -> TargetHandle | DriverUnavailable:
        target = self.config.targets.get(name)
        if target is None:
            return DriverUnavailable(
                f"No target named {name!r} is configured.", reason="not configured", target=name
            )
        try:
            cls = self.registry.load(target.driver)
        except DriverUnavailable as exc:
            return DriverUnavailable(
                f"Target {name!r} cannot be used: {exc.reason}",
                reason=exc.reason,
                driver=target.driver,
                target=name,
            )
        config, problems = driver_config(target, cls, self.config.allowed_roots)
        if problems:
            reason = "; ".join(problems)
            return DriverUnavailable(
                f"Target {name!r} is misconfigured: {reason}",
                reason=reason,
                driver=target.driver,
                target=name,
            )
        state_dir = self.config.state_dir / "targets" / name
        # The catalog object and its leases do no I/O until a driver asks for a lease.
        context = DriverContext(target=name, state_dir=state_dir, leases=self.catalog.leases)
        try:
            instance = cls(config, context)
        except Exception as exc:
            log.exception("driver %s could not be set up for target %s", target.driver, name)
            reason = f"driver {target.driver!r} could not be set up: {_describe(exc)}"
            return DriverUnavailable(
                f"Target {name!r} cannot be used: {reason}",
                reason=reason,
                driver=target.driver,
                target=name,
            )
        return TargetHandle(
            name=name,
            driver_name=target.driver,
            scheme=driver_scheme(cls),
            capabilities=declared_capabilities(cls),
            instance=instance,
        )

    def unusable(self, policy: Policy) -> dict[str, str]:
        """The policy's targets that cannot be used at all, with why: a configuration problem
        (driver not installed or refused, settings invalid), not storage that is down."""
        problems = {}
        for name in policy.targets:
            try:
                self.target(name)
            except DriverUnavailable as exc:
                problems[name] = exc.reason
        return problems

    # --- the audit trail ------------------------------------------------------------------------

    def note_config(self, *, actor: str) -> None:
        """Once per site: the audit trail records the configuration when it differs from the
        last one it saw (a changed target, policy or setting; never a setting's value)."""
        if self._config_noted:
            return
        self._config_noted = True
        try:
            self.catalog.audit.record_config(self.config, actor=actor)
        except CatalogError as exc:
            log.error("the audit trail could not record the configuration: %s", exc.message)

    # --- policies ------------------------------------------------------------------------------

    def policies(self) -> list[Policy]:
        """Configured policies plus those driver instances offer themselves."""
        found = dict(self.config.policies)
        for name in self.config.targets:
            try:
                handle = self.target(name)
                offered = list(handle.instance.policies())
            except DriverUnavailable:
                continue
            except Exception:
                log.exception("target %s failed to list its policies", name)
                continue
            for offer in offered:
                if offer.uuid in found:
                    log.warning(
                        "target %s offers policy %s, which the config already defines; "
                        "the config wins",
                        name,
                        offer.uuid,
                    )
                    continue
                bulk = None
                if offer.max_files or offer.max_bytes:
                    bulk = BulkLimits(max_files=offer.max_files, max_bytes=offer.max_bytes)
                found[offer.uuid] = Policy(
                    uuid=offer.uuid,
                    name=offer.name,
                    targets=(name,),
                    bulk=bulk,
                    offered_by=name,
                    verified_copies=self.config.targets[name].verified_copies,
                )
        return list(found.values())

    def policy(self, uuid: str) -> Policy:
        policy = self.config.policies.get(uuid)
        if policy is None:
            policy = next((p for p in self.policies() if p.uuid == uuid), None)
        if policy is None:
            known = ", ".join(sorted(p.uuid for p in self.policies())) or "none"
            raise PolicyNotFound(
                f"No archive policy with uuid {uuid!r} is configured (known: {known}).",
                policy=uuid,
            )
        return policy

    def refusal(self, policy: Policy) -> str | None:
        """Why new archives to `policy` are refused: an admin disabled it, or one of its
        targets (None: they are not). Restores and deletes are never refused for it."""
        if policy.disabled:
            return f"Policy {policy.name!r} is disabled: it takes no new archives."
        off = [n for n in policy.targets if (t := self.config.targets.get(n)) and t.disabled]
        if off:
            return (
                f"Policy {policy.name!r} takes no new archives: its target"
                f"{'s' if len(off) > 1 else ''} {', '.join(off)} "
                f"{'are' if len(off) > 1 else 'is'} disabled."
            )
        return None

    def bulk_support(self, policy: Policy) -> bool:
        """A bulk policy for Portal when every target's driver declares bulk.

        `bulk` limits in the config only bound the batches; they cannot make a driver that
        handles files one by one into a bulk one (that is logged, for the admin to fix).
        """
        for name in policy.targets:
            try:
                if Capability.BULK not in self.target(name).capabilities:
                    if policy.bulk is not None:
                        log.warning(
                            "policy %s has bulk limits, but target %s's driver does not "
                            "declare bulk: Portal is not offered it as a bulk policy",
                            policy.uuid,
                            name,
                        )
                    return False
            except DriverUnavailable:
                return False
        return True

    # --- readiness -----------------------------------------------------------------------------

    def readiness(self, policy: Policy) -> Readiness:
        """A policy is ready when every one of its targets is; never blocks past the timeout."""
        return _combine(policy, self.targets_readiness(policy.targets))

    def all_readiness(self) -> list[PolicyReadiness]:
        policies = self.policies()
        names = list(dict.fromkeys(n for p in policies for n in p.targets))
        states = self.targets_readiness(names)
        return [PolicyReadiness(policy=p, readiness=_combine(p, states)) for p in policies]

    def targets_readiness(self, names: list[str] | tuple[str, ...]) -> dict[str, Readiness]:
        """Check targets concurrently; the whole call waits at most `ready_timeout_seconds`."""
        results: dict[str, Readiness] = {}
        pending: dict[str, tuple[float, Future]] = {}
        for name in names:
            started = self._start_check(name)
            if isinstance(started, Readiness):
                results[name] = started
            else:
                pending[name] = started
        for name, (started, future) in pending.items():
            results[name] = self._await_check(name, started, future)
        return results

    def test_target(self, name: str) -> Readiness:
        """A fresh readiness check of one target, as the Portal pages' test button asks:
        the cached answer and a failed build are forgotten (the admin may just have fixed
        it), the check is bounded by `ready_timeout_seconds` as always."""
        with self._lock:
            self._ready_cache.pop(name, None)
            self._unusable.pop(name, None)
        return self.targets_readiness([name])[name]

    def checked_ago(self, name: str) -> float | None:
        """Seconds since target `name`'s readiness was last found (None: never)."""
        with self._lock:
            cached = self._ready_cache.get(name)
        return None if cached is None else self._clock() - cached[0]

    def _start_check(self, name: str) -> Readiness | tuple[float, Future]:
        now = self._clock()
        with self._lock:
            cached = self._ready_cache.get(name)
            if cached and now - cached[0] < self.config.portal.ready_cache_seconds:
                return cached[1]
        try:
            handle = self.target(name)
        except DriverUnavailable as exc:
            return self._remember(name, Readiness.not_ready(exc.reason))
        with self._lock:
            started, future = self._checks.get(name, (now, None))
            if future is None or future.done():
                # A check that hung earlier still holds its thread; start a new one only when
                # the previous has answered, so a dead NFS mount cannot pile up threads.
                started, future = now, _in_daemon_thread(handle.instance.check_ready, name)
                self._checks[name] = (started, future)
        return started, future

    def _await_check(self, name: str, started: float, future: Future) -> Readiness:
        deadline = started + self.config.portal.ready_timeout_seconds
        try:
            result = future.result(timeout=max(0.0, deadline - self._clock()))
        except FutureTimeout:
            waited = self._clock() - started
            return self._remember(
                name, Readiness.not_ready(f"no answer from target after {waited:.0f} s")
            )
        except Exception as exc:
            log.exception("readiness check of target %s raised", name)
            return self._remember(name, Readiness.not_ready(_describe(exc)))
        if not isinstance(result, Readiness):
            result = Readiness.not_ready(f"driver returned {type(result).__name__}, not Readiness")
        return self._remember(name, result)

    def _remember(self, name: str, readiness: Readiness) -> Readiness:
        with self._lock:
            self._ready_cache[name] = (self._clock(), readiness)
        return readiness


def driver_config(
    target: Target, cls: type, allowed_roots: tuple[Path, ...]
) -> tuple[Any, list[str]]:
    """The driver's Config for `target` and every problem with its settings, each with its
    path (`targets.x.settings.root: ...`): what workers build targets from, and what a
    save from the Portal pages or `config import` is checked against."""
    config, problems = structure(cls.Config, target.settings, path=f"{target.path}.settings")
    if config is None or not allowed_roots:
        return config, problems
    roots = [os.path.realpath(root) for root in allowed_roots]
    for info in describe_config(cls.Config):
        value = getattr(config, info.name, None)
        if not info.confined or value is None:
            continue
        # Resolved, so neither ".." nor a symlink inside an allowed root leads out of it.
        real = os.path.realpath(value)
        if not any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots):
            allowed = ", ".join(str(r) for r in allowed_roots)
            problems.append(
                f"{target.path}.settings.{info.name}: {value} is outside the allowed roots "
                f"({allowed}); the site's [config] allowed_roots sets them"
            )
    return (None if problems else config), problems


def check_targets(config: SiteConfig, registry: Any) -> list[str]:
    """Every problem a worker would find building `config`'s targets: a driver that is not
    installed or does not load, settings its driver refuses, a confined path outside the
    allowed roots. Nothing is set up and no storage is touched."""
    problems = []
    for _name, target in config.targets.items():
        try:
            cls = registry.load(target.driver)
        except DriverUnavailable as exc:
            problems.append(f"{target.path}.driver: {exc.reason}")
            continue
        problems.extend(driver_config(target, cls, config.allowed_roots)[1])
    return problems


def _in_daemon_thread(call: Callable[[], Any], name: str) -> Future:
    """Run `call` in a daemon thread of its own; its result or error arrive in the Future.

    Not a ThreadPoolExecutor: the interpreter joins those at exit, so one hung probe (a dead
    NFS mount) would keep `archive-core check`, or a Portal worker, from exiting.
    """
    future: Future = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(call())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=f"archive-core-ready-{name}", daemon=True).start()
    return future


def _combine(policy: Policy, states: dict[str, Readiness]) -> Readiness:
    if policy.disabled:
        return Readiness.not_ready("the policy is disabled: it takes no new archives")
    parts = [states[n] for n in policy.targets]
    if len(parts) == 1:
        return parts[0]
    reason = "; ".join(f"{n}: {r.reason}" for n, r in zip(policy.targets, parts, strict=True))
    return Readiness(ok=all(r.ok for r in parts), reason=reason)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ArchiveCoreError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"
