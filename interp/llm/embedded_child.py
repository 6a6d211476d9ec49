"""Child process that hosts the embedded llama.cpp server (see interp.llm.embedded).

Run as a script, not imported: it needs only the standard library and xllamacpp, so it starts in a
fraction of a second. Protocol: argv[1] is a JSON object of server parameters; the child prints
one line `ready <address>` (or `failed <reason>`) on stdout, then serves until its stdin reaches
EOF — the parent closing it, or the parent dying — and leaves with os._exit, never running
`xllamacpp::Server::~Server`, whose thread join can wait forever.
"""
from __future__ import annotations

import json
import os
import signal
import sys


def _params(spec: dict):
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = spec["model_path"]
    # A set of names in newer xllamacpp, a string in older ones: a string assigned to the set
    # became the set of its characters, and /v1/models listed "-" instead of llm.model.
    alias = spec["alias"]
    p.model_alias = {alias} if isinstance(p.model_alias, (set, frozenset)) else alias
    p.n_parallel = spec["n_parallel"]
    p.n_ctx = spec["n_ctx"]  # shared by the parallel slots
    p.cpuparams.n_threads = spec["n_threads"]
    p.cpuparams_batch.n_threads = spec["n_threads"]
    p.port = 0             # any free port, on the default 127.0.0.1 host
    p.verbosity = -1       # llama.cpp is very chatty on stderr otherwise
    return p


def main() -> None:
    # The parent owns our lifetime: a Ctrl-C in the terminal reaches it, and it closes our stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import xllamacpp as xlc

        server = xlc.Server(_params(json.loads(sys.argv[1])))
        address = server.listening_address
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
        sys.stdout.write(f"failed {type(err).__name__}: {err}\n".replace("\n", " ").strip() + "\n")
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.write(f"ready {address}\n")
    sys.stdout.flush()
    while sys.stdin.buffer.read(65536):
        pass  # nothing is ever sent; EOF is the stop signal
    os._exit(0)  # skip the server's destructor (and the interpreter's teardown) on purpose


if __name__ == "__main__":
    main()
