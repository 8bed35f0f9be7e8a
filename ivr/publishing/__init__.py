"""Content versions: publish, activate, and serve each call its own version.

- archive: content files as bytes by path, from folders or an upload, safely;
- versions: the versions stored in PostgreSQL and the active one;
- active: what one instance serves (the active version, older ones cached);
- publish: publish, activate and list, as plain async functions;
- wiring: the server's cleanup context, the NOTIFY listener, SIGHUP.
"""
