"""archive-core's SFTP driver: copies on any SFTP server, written atomically and verified."""
