"""Sub-commands of the ``unetlab`` command line, one module each.

Each module defines ``add_parser(subparsers)`` and ``run(args) -> int``; heavy imports
happen inside ``run`` so that ``unetlab --help`` stays fast.
"""

COMMANDS = ("demo", "train", "evaluate", "predict", "compare", "stats", "export", "info",
            "plan", "fit")
