"""The interactive menu: the same commands as the CLI, chosen with rich prompts.

It runs the commands through the table `keyroll.cli.commands` hands it (and never
imports that module), so each choice behaves exactly as the command line does."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable, Mapping

from keyroll.errors import KeyrollError

Handlers = Mapping[str, Callable[[argparse.Namespace], int]]

CHOICES = [
    ("1", "Initialize (create missing secrets)", "init"),
    ("2", "Rotate one secret", "rotate-one"),
    ("3", "Rotate all secrets", "rotate-all"),
    ("4", "Back up now", "backup"),
    ("5", "Restore a backup", "restore"),
    ("6", "Status", "status"),
    ("7", "Validate", "validate"),
    ("0", "Exit", "exit"),
]


def _namespace(base: argparse.Namespace, command: str, **values: object) -> argparse.Namespace:
    args = copy.copy(base)
    args.command = command
    args.json = False
    args.wait = 0.0
    for key, value in values.items():
        setattr(args, key, value)
    return args


def run_menu(base: argparse.Namespace, names: list[str], handlers: Handlers) -> int:
    """Loop until the user exits (0, or Ctrl-D at any prompt); each choice runs the
    matching command from `handlers` (command name -> handler); `names` are the secrets."""
    try:
        return _menu_loop(base, names, handlers)
    except EOFError:  # Ctrl-D: leave, as a shell does
        print()
        return 0


def _menu_loop(base: argparse.Namespace, names: list[str], handlers: Handlers) -> int:
    from rich.console import Console
    from rich.prompt import Confirm, Prompt
    from rich.table import Table

    from keyroll import stopping

    console = Console()
    while True:
        menu = Table(title="keyroll", show_header=False, box=None)
        for key, label, _ in CHOICES:
            menu.add_row(f"[bold]{key}[/]", label)
        console.print(menu)
        choice = Prompt.ask("Choose", choices=[c[0] for c in CHOICES], default="6")
        action = next(c[2] for c in CHOICES if c[0] == choice)
        if action == "exit":
            return 0
        try:
            if action == "init":
                handlers["init"](_namespace(base, "init", force=False, import_metadata=None))
            elif action == "rotate-one":
                name = Prompt.ask("Secret", choices=names, show_choices=True)
                if Confirm.ask(f"Rotate {name} now?"):
                    handlers["rotate"](_namespace(base, "rotate", names=[name], dry_run=False, emergency=False))
            elif action == "rotate-all":
                if Confirm.ask(f"Rotate all {len(names)} secrets now?"):
                    handlers["rotate"](_namespace(base, "rotate", names=["all"], dry_run=False, emergency=False))
            elif action == "backup":
                handlers["backup"](_namespace(base, "backup"))
            elif action == "restore":
                handlers["list-backups"](_namespace(base, "list-backups"))
                backup = Prompt.ask("Backup to restore (name or path, empty to cancel)", default="")
                if backup and Confirm.ask(f"Restore {backup}? A pre-restore backup is taken first."):
                    handlers["restore"](_namespace(base, "restore", backup=backup, dry_run=False))
            elif action == "status":
                handlers["status"](_namespace(base, "status"))
            elif action == "validate":
                handlers["validate"](_namespace(base, "validate"))
        except KeyrollError as exc:
            console.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        if stopping.received() is not None:  # Ctrl-C during a write: it stopped safely; leave
            return 0
        console.print()
