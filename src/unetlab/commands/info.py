"""``unetlab info CHECKPOINT [--json PATH]``: show a model's card.

The card (see :mod:`unetlab.card`) says what the model is, what input it expects
(channels, scaling, normalisation), its classes and palette, its size rules and how it
was trained. ``--json`` writes it with the keys other tools read at the top level
(``name``, ``in_channels``, ``num_classes``, ``class_names``, ``normalize``,
``schema_version``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import check_not_input, write_json


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "info", help="show a model's card (input, classes, geometry, training)",
        description="Print the model card stored with a model file or checkpoint: "
        "architecture, input channels, scaling and normalisation, class names and palette, "
        "geometry and the training summary.")
    p.add_argument("checkpoint", type=Path,
                   help="a model file (.safetensors) or a checkpoint folder")
    p.add_argument("--json", metavar="PATH", type=Path, default=None,
                   help="also write the card as JSON to PATH")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ..card import flat_card, format_card, read_card
    from ..models.serialization import resolve_model_file

    path = resolve_model_file(args.checkpoint)
    if args.json is not None:
        check_not_input(args.json, [path], "--json")
    card = read_card(path)
    print(format_card(card, path))
    if args.json is not None:
        write_json(args.json, flat_card(card))
        print(f"saved {args.json}")
    return 0
