"""argparse help formatting shared by the command-line tools."""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append "(default: ...)" to option help, except where it would mislead.

    Required options, options whose default is None (meaning "not set") and
    help texts that already name their default are left as written.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required or action.default is None or action.default is argparse.SUPPRESS:
            return text
        if "default" in text:
            return text
        return super()._get_help_string(action)
