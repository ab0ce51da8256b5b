"""Downloads: the pure plan (`plan`), its execution (`send`, `zerocopy`, `gzip`) and the
hot path in front of the Application (`hot`: eligible? → plan → send)."""
