"""A throwaway OpenSSH server on loopback for the sftp driver's tests and bench/sftp.py.

`SshServer` writes everything it needs into its own temporary directory (host keys, an
`sshd_config`, client key pairs, `authorized_keys`, `known_hosts`, the server's log) and runs
`/usr/sbin/sshd -D -e -f <that config>` as a child process on 127.0.0.1 and a free port. It
never reads or changes /etc/ssh, the system's sshd or its host keys.

Password authentication: with `UsePAM no`, sshd checks the password against the user's entry
in /etc/shadow. `SshServer(password=...)` therefore starts sshd in a mount namespace of its own
(`unshare --mount`) in which a copy of /etc/shadow, with the current user's hash replaced by
the hash of `password`, is bind-mounted over /etc/shadow. Only that sshd and its sessions see
the copy: the system's accounts and passwords are not touched. It needs root (CAP_SYS_ADMIN),
which the tests have on CI; elsewhere `PasswordUnavailable` says why.

One thing sshd needs from the system when it runs as root: its privilege-separation directory
(/run/sshd, empty, normally made by the ssh service's unit). `start()` creates it when it is
missing, as the service would.

Use it from the tests as `from drivers.sftp.tests.sshd import SshServer` (the pytest fixtures
are in conftest.py beside it), from a script with `sys.path.insert(0, ".../drivers/sftp/tests")`
and `import sshd`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
PRIVSEP_DIR = Path("/run/sshd")
SETUP_HINT = "run scripts/setup-system to install openssh-server, openssh-client and openssl"

#: The passphrase of `SshServer.client_key_encrypted`.
CLIENT_KEY_PASSPHRASE = "archive-core test passphrase"

_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 30


class SshUnavailable(RuntimeError):
    """OpenSSH's server or ssh-keygen is not installed on this machine."""


class SshStartFailed(RuntimeError):
    """sshd was found but did not start; the message carries its log."""


class PasswordUnavailable(RuntimeError):
    """Password authentication cannot be set up here (needs root and a mount namespace)."""


def available() -> str | None:
    """None when a server can be started here, else the reason it cannot."""
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing; {SETUP_HINT}"
    if shutil.which(SSH_KEYGEN) is None:
        return f"{SSH_KEYGEN} is missing; {SETUP_HINT}"
    return None


def password_unavailable() -> str | None:
    """None when `SshServer(password=...)` can work here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "password authentication needs root (sshd reads /etc/shadow; see sshd.py)"
    if shutil.which("unshare") is None:
        return "password authentication needs util-linux's unshare"
    if shutil.which("openssl") is None and importlib.util.find_spec("crypt") is None:
        return f"password authentication needs openssl to hash the password; {SETUP_HINT}"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if probe.returncode != 0:
        return f"no private mount namespace here: {probe.stderr.strip()}"
    return None


def fingerprint(public_key: Path) -> str:
    """The SHA256 fingerprint of a public key file, as `ssh-keygen -lf` prints it."""
    out = subprocess.run(
        [SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(public_key)],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return out.split()[1]


def generate_key(path: Path, kind: str = "ed25519", passphrase: str = "") -> Path:
    """Create an OpenSSH key pair at `path` and `path`.pub; return `path`."""
    bits = ["-b", "3072"] if kind == "rsa" else []
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", kind, *bits, "-N", passphrase, "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


class SshServer:
    """One sshd on 127.0.0.1 between `start()` and `close()`; use it as a context manager.

    Attributes a client needs: `host`, `port`, `user`, `client_key` (and
    `client_key_encrypted`, whose passphrase is CLIENT_KEY_PASSPHRASE), `known_hosts`,
    `host_key_fingerprint` (ed25519, "SHA256:..."), `password` (or None), and
    `ssh_options()` / `destination` for OpenSSH's ssh, sftp and scp.

    `stop()` ends the server and its sessions, `kill()` does it with SIGKILL (a crashed
    server), `restart()` starts it again on the same port with the same keys, `freeze()` and
    `thaw()` stop and continue the server and every session process (a hung server: the TCP
    connection stays up, nothing answers), `kill_sessions()` drops the connections and keeps
    the listener.
    """

    def __init__(
        self,
        *,
        sftp_server: str = "internal-sftp",
        password: str | None = None,
        log_level: str = "VERBOSE",
        extra_config: dict[str, str] | None = None,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        base_dir: str | None = None,
    ) -> None:
        """`sftp_server`: "internal-sftp" (sshd's own) or "sftp-server" (/usr/lib/openssh's)."""
        if sftp_server not in ("internal-sftp", "sftp-server"):
            raise ValueError(f"sftp_server must be internal-sftp or sftp-server: {sftp_server!r}")
        self.sftp_server = sftp_server
        self.password = password
        self.log_level = log_level
        self.extra_config = dict(extra_config or {})
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.base_dir = base_dir
        self.host = HOST
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.port: int | None = None
        self.root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self.host_key_fingerprint = ""
        self.host_key_fingerprints: dict[str, str] = {}

    # ---- paths -------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        if self.root is None:
            raise RuntimeError("The ssh test server has no directory: it is not started.")
        return self.root / name

    @property
    def config_file(self) -> Path:
        return self._path("sshd_config")

    @property
    def log_file(self) -> Path:
        return self._path("sshd.log")

    @property
    def client_key(self) -> Path:
        return self._path("client_ed25519")

    @property
    def client_key_encrypted(self) -> Path:
        return self._path("client_ed25519_encrypted")

    @property
    def known_hosts(self) -> Path:
        return self._path("known_hosts")

    @property
    def data_dir(self) -> Path:
        """An empty directory in the server's temp dir, for the tests' remote files."""
        return self._path("data")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}"

    def ssh_options(
        self, *, known_hosts: Path | None = None, key: bool = True, batch: bool = True
    ) -> list[str]:
        """Arguments for ssh/sftp/scp: this port, our key and known_hosts, nothing of ~/.ssh.

        sftp and scp spell the port `-P`, ssh `-p`; `-o Port=` suits all three. `key=False`
        leaves the client key out, `batch=False` allows prompts (SSH_ASKPASS): for ssh the
        first value of an option wins, so these cannot be overridden by adding `-o`s.
        """
        identity = ["-o", f"IdentityFile={self.client_key}"] if key else ["-o", "IdentityFile=none"]
        return [
            "-F",
            "/dev/null",
            "-o",
            f"Port={self.port}",
            "-o",
            f"User={self.user}",
            *identity,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"BatchMode={'yes' if batch else 'no'}",
            "-o",
            "ConnectTimeout=10",
        ]

    def known_hosts_lines(self) -> list[str]:
        """known_hosts lines for every host key, under `[127.0.0.1]:port`."""
        lines = []
        for kind in ("ed25519", "ecdsa", "rsa"):
            kind_name, blob = self._path(f"host_{kind}.pub").read_text().split()[:2]
            lines.append(f"[{self.host}]:{self.port} {kind_name} {blob}")
        return lines

    # ---- life cycle ----------------------------------------------------------------------------

    def __enter__(self) -> SshServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Create the directory and keys (first time only), then run sshd and wait for it."""
        if self._process is not None:
            raise RuntimeError("The ssh test server is already running.")
        reason = available()
        if reason is not None:
            raise SshUnavailable(reason)
        if self.password is not None and (why := password_unavailable()) is not None:
            raise PasswordUnavailable(why)
        fresh = self.root is None
        if fresh:
            self.root = Path(tempfile.mkdtemp(prefix="archive-core-sshd-", dir=self.base_dir))
        try:
            if fresh:
                self._make_files()
            if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
                PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
            self._launch(keep_port=not fresh)
        except BaseException:
            self.close()
            raise

    def stop(self) -> None:
        """End sshd and every session (SIGTERM, then SIGKILL); keep the directory for restart."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL sshd and every session at once, as a crash would; keep the directory."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """stop() if running, then start again on the same port with the same keys."""
        if self._process is not None:
            self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer()
        self._process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
        self.port = None

    def session_pids(self) -> list[int]:
        """Every process below the listener (connections, their sessions, sftp servers)."""
        if self._process is None:
            return []
        return _descendants(self._process.pid)

    def freeze(self) -> None:
        """SIGSTOP the listener and every session process: connections stay, nothing answers."""
        if self._process is None:
            raise RuntimeError("The ssh test server is not running.")
        os.kill(self._process.pid, signal.SIGSTOP)
        # The listener stopped first, so no new session appears while we walk the tree; a
        # session that forks its sftp child just now is caught by the second pass.
        for _ in range(2):
            for pid in self.session_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
        # A stop signal takes effect when the process next runs: until then it shows R or S.
        # The sessions are not our children (no waitid), so their state is read until every
        # one shows T (or Z: one that was exiting is dead, not running); a deadline keeps a
        # process that never stops from hanging the test.
        deadline = time.monotonic() + self.stop_timeout
        while not all(_state(pid) in _STOPPED for pid in [self._process.pid, *self.session_pids()]):
            if time.monotonic() > deadline:
                raise RuntimeError("the ssh test server did not stop within its stop timeout")

    def thaw(self) -> None:
        """SIGCONT what freeze() stopped."""
        if self._process is None:
            raise RuntimeError("The ssh test server is not running.")
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        os.kill(self._process.pid, signal.SIGCONT)

    def kill_sessions(self) -> None:
        """SIGKILL every connection and session; the listener goes on accepting."""
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(text[-lines:]) or "(server log is empty)"

    # ---- internals -----------------------------------------------------------------------------

    def _make_files(self) -> None:
        root = self._path("")
        os.chmod(root, 0o700)
        self.data_dir.mkdir()
        for kind in ("ed25519", "ecdsa", "rsa"):
            public = generate_key(root / f"host_{kind}", kind).with_suffix(".pub")
            self.host_key_fingerprints[kind] = fingerprint(public)
        self.host_key_fingerprint = self.host_key_fingerprints["ed25519"]
        generate_key(self.client_key)
        generate_key(self.client_key_encrypted, passphrase=CLIENT_KEY_PASSPHRASE)
        authorized = [
            self.client_key.with_suffix(".pub").read_text(),
            self.client_key_encrypted.with_suffix(".pub").read_text(),
        ]
        self._path("authorized_keys").write_text("".join(authorized))
        if self.password is not None:
            self._write_shadow(self.password)

    def _write_shadow(self, password: str) -> None:
        hashed = _hash_password(password)
        lines = Path("/etc/shadow").read_text().splitlines()
        # name:hash:last change (days):min:max:warn:inactive:expire:reserved; a last change
        # of 0 would mean "must change the password now", expiry fields none.
        entry = [self.user, hashed, str(int(time.time() // 86400)), "0", "99999", "7", "", "", ""]
        out = [line for line in lines if line.split(":", 1)[0] != self.user]
        out.append(":".join(entry))
        shadow = self._path("shadow")
        shadow.write_text("\n".join(out) + "\n")
        os.chmod(shadow, 0o600)

    def _config(self) -> str:
        root = self._path("")
        subsystem = "internal-sftp" if self.sftp_server == "internal-sftp" else str(SFTP_SERVER)
        settings: dict[str, str] = {
            "ListenAddress": self.host,
            "Port": str(self.port),
            "PidFile": str(root / "sshd.pid"),
            "AuthorizedKeysFile": str(root / "authorized_keys"),
            "UsePAM": "no",
            "StrictModes": "no",
            "PubkeyAuthentication": "yes",
            "PasswordAuthentication": "yes" if self.password is not None else "no",
            "KbdInteractiveAuthentication": "no",
            "PermitRootLogin": "yes" if self.password is not None else "prohibit-password",
            "PermitEmptyPasswords": "no",
            "AuthenticationMethods": "any",
            "Subsystem": f"sftp {subsystem}",
            "LogLevel": self.log_level,
            # Many connections at once (the small-file bench, reconnect tests): the default
            # 10:30:100 drops unauthenticated connections at random beyond 10.
            "MaxStartups": "1000",
            # Sessions (channels) per connection: ssh -O / ControlMaster or several sftp
            # channels over one connection; the default is 10.
            "MaxSessions": "256",
            "MaxAuthTries": "10",
            "LoginGraceTime": "60",
            "UseDNS": "no",
            "PrintMotd": "no",
            "PrintLastLog": "no",
            "X11Forwarding": "no",
            "AllowTcpForwarding": "no",
            "PermitUserEnvironment": "no",
            "ClientAliveInterval": "0",
            "TCPKeepAlive": "yes",
        }
        settings.update(self.extra_config)
        lines = [f"HostKey {root / f'host_{kind}'}" for kind in ("ed25519", "ecdsa", "rsa")]
        lines += [f"{key} {value}" for key, value in settings.items()]
        return "\n".join(lines) + "\n"

    def _command(self) -> list[str]:
        sshd = [str(SSHD), "-D", "-e", "-f", str(self.config_file)]
        if self.password is None:
            return sshd
        # sh execs sshd, unshare execs sh: the child's pid stays sshd's pid.
        script = 'mount --bind "$1" /etc/shadow && shift && exec "$@"'
        shadow = str(self._path("shadow"))
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            shadow,
            *sshd,
        ]

    def _launch(self, *, keep_port: bool) -> None:
        attempts = 1 if keep_port else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            if not keep_port:
                self.port = _free_port()
            self.config_file.write_text(self._config())
            check = subprocess.run(
                [str(SSHD), "-t", "-f", str(self.config_file)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if check.returncode != 0:
                raise SshStartFailed(f"sshd -t refused {self.config_file}:\n{check.stderr}")
            with self.log_file.open("ab") as sink:
                process = subprocess.Popen(
                    self._command(),
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C is for the test runner, not for sshd
                    cwd=self.root,
                )
            self._process = process
            self._finalizer = weakref.finalize(self, _shutdown, process, self.stop_timeout)
            try:
                self._wait_until_accepting(process)
                return
            except SshStartFailed:
                if attempt == attempts or "Address already in use" not in self.log_tail():
                    raise
                self._end(signal.SIGKILL)

    def _wait_until_accepting(self, process: subprocess.Popen[bytes]) -> None:
        # Waiting for an external process: poll a connect until the banner comes, with a deadline.
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while True:
            if process.poll() is not None:
                raise SshStartFailed(
                    f"sshd exited with {process.returncode} before accepting connections on "
                    f"{self.host}:{self.port}. Log ({self.log_file}):\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=2) as probe:
                    if probe.recv(64).startswith(b"SSH-"):
                        self.known_hosts.write_text("\n".join(self.known_hosts_lines()) + "\n")
                        return
            except OSError as error:
                last_error = error
            if time.monotonic() >= deadline:
                raise SshStartFailed(
                    f"sshd on {self.host}:{self.port} did not answer within "
                    f"{self.start_timeout:g}s (last attempt: {last_error}). "
                    f"Log ({self.log_file}):\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _end(self, how: signal.Signals) -> None:
        finalizer, self._finalizer = self._finalizer, None
        process, self._process = self._process, None
        if finalizer is not None:
            finalizer.detach()
        if process is not None:
            _shutdown(process, self.stop_timeout, how)


def _state(pid: int) -> str | None:
    """The process state letter of /proc/<pid>/stat (R, S, D, T, Z ...), None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return None


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _shutdown(
    process: subprocess.Popen[bytes], timeout: float, how: signal.Signals = signal.SIGTERM
) -> None:
    # A module function so weakref.finalize can run it at interpreter exit.
    if process.poll() is not None:
        return
    sessions = _descendants(process.pid)
    for pid in [process.pid, *sessions]:
        with contextlib.suppress(ProcessLookupError):
            if how != signal.SIGKILL:
                os.kill(pid, signal.SIGCONT)  # a frozen server must see the SIGTERM
            os.kill(pid, how)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    # Sessions that outlived their listener (they are reparented, not ended, when it exits).
    for pid in sessions:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _hash_password(password: str) -> str:
    """A SHA-512 crypt(3) hash, as /etc/shadow holds them."""
    if shutil.which("openssl") is None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # Python < 3.13; scripts/setup-system installs openssl

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    result = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return result.stdout.strip()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


#: Process states freeze() waits for: stopped, or already dead (an exiting one does not stop).
_STOPPED = ("T", "t", "Z", "X", None)
