"""The command line documents itself: a version, a description for every subcommand, help for
every flag (with its default where it has one)."""
import argparse

from eps_resnet import __version__
from eps_resnet.cli import build_parser, main


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert capsys.readouterr().out.strip() == f"eps-resnet {__version__}"


def test_every_subcommand_and_flag_is_documented():
    missing = []
    for name, sub in subparsers().items():
        if not (sub.description or "").strip():
            missing.append(f"{name}: no description")
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = action.option_strings[0] if action.option_strings else action.dest
            if not (action.help or "").strip():
                missing.append(f"{name} {flag}: no help")
            elif action.default not in (None, False, argparse.SUPPRESS, []) and \
                    "default" not in action.help.lower() and "%(default)" not in action.help:
                missing.append(f"{name} {flag}: default {action.default!r} not said")
    assert not missing, "\n".join(missing)
