"""``hpo study``: create a study from its config, and query its trials."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hpo.cli.options import common_options, example, storage_url, study_option
from hpo.study.queries import DEFAULT_PAGE_SIZE
from storage import masked_url

F = TypeVar("F", bound=Callable[..., Any])


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def json_option(f: F) -> F:
    """``--json``: print JSON instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="print JSON")(f)


@click.group()
def study() -> None:
    """Create a study and query its trials."""


@study.command(epilog=example("hpo study create --config hpo/configs/cluster4.toml"))
@click.option(
    "--config",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="study config (TOML)",
)
@click.option(
    "--n-trials",
    type=click.IntRange(min=1),
    default=None,
    help="override study.n_trials of the config",
)
@common_options()
def create(config: Path, n_trials: int | None, storage: str | None, output_root: Path) -> None:
    """Create a study from a TOML config and enqueue its seed configs."""
    import dataclasses

    from hpo.study.config import load_config
    from hpo.study.creation import create_study

    study_config = load_config(config)
    if n_trials is not None:
        study_config = dataclasses.replace(
            study_config, study=dataclasses.replace(study_config.study, n_trials=n_trials)
        )
    section = study_config.study
    created = create_study(study_config, storage_url(storage), where=str(config))
    click.echo(
        f"study {created.study_name!r} ready: {section.n_trials} trials on cluster "
        f"{section.cluster_id} of dataset {section.dataset!r}; start workers with "
        f"`hpo launch --study {created.study_name}`"
    )


@study.command(epilog=example("hpo study budget --study cluster4 --n-trials 40"))
@study_option
@click.option(
    "--n-trials",
    type=click.IntRange(min=1),
    required=True,
    help="the new total number of trials (at least the current one)",
)
@common_options()
def budget(name: str, n_trials: int, storage: str | None, output_root: Path) -> None:
    """Raise a study's trial budget; running workers take the new trials."""
    from hpo.study.creation import raise_budget

    raise_budget(storage_url(storage), name, n_trials)
    click.echo(f"study {name!r}: budget raised to {n_trials} trials")


@study.command(epilog=example("hpo study status --study cluster4"))
@study_option
@json_option
@common_options()
def status(name: str, as_json: bool, storage: str | None, output_root: Path) -> None:
    """Trial counts by state, the best trial by eval_loss, the promoted trial by similarity
    (the evaluator's choice, which may be another trial) and the study's decision line."""
    from hpo.cli.display import print_table, status_table
    from hpo.study.queries import study_status

    result = study_status(storage_url(storage), name)
    if as_json:
        _print_json(result.to_dict())
    else:
        print_table(status_table(result))


@study.command(epilog=example("hpo study best --study cluster4 -n 3 --json"))
@study_option
@click.option(
    "-n", "n", type=click.IntRange(min=1), default=5, show_default=True, help="how many trials"
)
@json_option
@common_options()
def best(name: str, n: int, as_json: bool, storage: str | None, output_root: Path) -> None:
    """The best COMPLETE trials by eval_loss, each with its similarity where evaluated, and
    the promoted trial (the best similarity among the evaluated trials, which the evaluator
    copied out): the lowest eval_loss is not always the highest similarity."""
    from hpo.cli.display import print_table, trials_table
    from hpo.study.queries import best_and_promoted

    found = best_and_promoted(storage_url(storage), name, n)
    rows = found.rows
    if as_json:
        _print_json([r.to_dict() for r in rows])
    elif not rows:
        click.echo(f"study {name!r} has no COMPLETE trial yet")
    else:
        title = f"best {len(rows)} trials of {name} by eval_loss"
        print_table(trials_table(rows, title, found.promoted))


@study.command(
    epilog=example(
        "hpo study trials --study cluster4",
        "hpo study trials --study cluster4 --limit 100 --offset 100",
        "hpo study trials --study cluster4 --oldest-first --limit 0 --json",
    )
)
@study_option
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=DEFAULT_PAGE_SIZE,
    show_default=True,
    help="trials shown; 0 for all of them (a study may have thousands)",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="trials skipped first (the newest ones, or the oldest with --oldest-first)",
)
@click.option(
    "--oldest-first", is_flag=True, help="trial 0 first  [default: the newest trial first]"
)
@json_option
@common_options()
def trials(
    name: str,
    limit: int,
    offset: int,
    oldest_first: bool,
    as_json: bool,
    storage: str | None,
    output_root: Path,
) -> None:
    """A page of trials with state, eval_loss and parameters: the newest 50 by default
    (--limit, --offset and --oldest-first page through the rest)."""
    from hpo.cli.display import print_table, trials_table
    from hpo.study.queries import trials_page

    page = trials_page(
        storage_url(storage),
        name,
        limit=limit or None,
        offset=offset,
        newest_first=not oldest_first,
    )
    if as_json:
        _print_json([r.to_dict() for r in page.rows])
        return
    order = "oldest" if oldest_first else "newest"
    if page.rows:
        shown = f"{offset + 1}-{offset + len(page.rows)} of {page.total}, {order} first"
    else:
        shown = f"none of {page.total} after skipping {offset}"
    print_table(trials_table(page.rows, f"trials of {name} ({shown})"))


@study.command("list", epilog=example("hpo study list", "hpo study list --json"))
@json_option
@common_options()
def list_(as_json: bool, storage: str | None, output_root: Path) -> None:
    """Every study in the storage with its trial counts and best value."""
    from hpo.cli.display import print_table, study_list_table
    from hpo.study.queries import list_studies

    url = storage_url(storage)
    rows = list_studies(url)
    if as_json:
        _print_json([r.to_dict() for r in rows])
    elif not rows:
        click.echo(f"no study in {masked_url(url)}; create one with `hpo study create`")
    else:
        print_table(study_list_table(rows, f"studies in {masked_url(url)}"))
