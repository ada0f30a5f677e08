"""The askpass program ssh runs for a passphrase or password (SSH_ASKPASS, forced).

Run by path with the standard library only. It asks the driver's process over the unix
socket named in ARCHIVE_CORE_SFTP_ASKPASS for the answer to ssh's prompt (its one
argument) and prints it for ssh: the secret never passes through a file, an argument or an
environment variable. No answer (the channel is closed, the prompt is not one the target
has a secret for) exits 1, which ssh takes as "no".
"""

import os
import socket
import sys

SOCKET_ENV = "ARCHIVE_CORE_SFTP_ASKPASS"


def main() -> int:
    path = os.environ.get(SOCKET_ENV)
    prompt = sys.argv[1] if len(sys.argv) > 1 else ""
    if not path:
        return 1
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
            channel.settimeout(10)
            channel.connect(path)
            channel.sendall(prompt.encode("utf-8", "replace")[:4096] + b"\n")
            answer = b""
            while chunk := channel.recv(4096):
                answer += chunk
    except OSError:
        return 1
    if not answer.startswith(b"+"):
        return 1
    sys.stdout.buffer.write(answer[1:] + b"\n")
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
