"""The ``tingxie`` command line: the parser and entry point (``main``), the transcribe/models/languages/demo commands
(``commands``) and the sub-commands that live here (eval, tune, language, practice); other edges (server, batch,
streaming, finetune) register their own sub-commands."""

from .main import _add_dataclass_options, build_parser, entry, main, optional, str2bool

__all__ = ["_add_dataclass_options", "build_parser", "entry", "main", "optional", "str2bool"]
