"""Warm starts (``create_study(..., warm_start=[...])``): finding and loading the source studies.

The sources are stored with the study (``system_attrs["warm_start"]``: ``[[name, url or None], ...]``)
so that every worker and every resume learns from them too; each process loads their COMPLETE
trials once, when its sampler first reads them (:attr:`tunelab.history.History.sources`). What the
samplers make of them is in :mod:`tunelab.samplers.transfer`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from tunelab.errors import ConfigError, StudyNotFoundError
from tunelab.history import SourceStudy
from tunelab.records import StudyRecord, TrialState, study_directions
from tunelab.space import SpaceEntry
from tunelab.storage import BaseStorage, get_storage

WARM_START_KEY = "warm_start"

logger = logging.getLogger("tunelab")


def stored_sources(system_attrs: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """The sources stored with a study."""
    entries = system_attrs.get(WARM_START_KEY) or []
    return [(str(e[0]), e[1] if isinstance(e[1], str) else None) for e in entries if isinstance(e, list) and e]


def absolute_sources(sources: Sequence[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """``sources`` with each relative SQLite path made absolute from the current directory, as they are
    stored: a worker or a resume started in another folder (``tunelab worker``, a sweep's ``workdir``)
    then reads the same file rather than finding no such study and learning from nothing."""
    return [(name, None if url is None else _absolute_sqlite(url)) for name, url in sources]


def _absolute_sqlite(url: str) -> str:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return url
    path, sep, query = url[len(prefix):].partition("?")
    if not path or path == ":memory:" or path.startswith(("/", "file:")):
        return url
    return prefix + os.path.abspath(path) + sep + query


def check_sources(
    sources: Sequence[tuple[str, str | None]], storage: BaseStorage, name: str, space: Mapping[str, SpaceEntry] | None
) -> None:
    """ConfigError when a source does not exist, is the study itself, or shares no parameter with a
    declared ``space`` (checked before the study is created), or is named twice (by name and by URL, or
    by two spellings of one URL: its trials would count twice)."""
    seen: dict[tuple[Any, ...], str] = {}
    for source, url in sources:
        where = storage if url is None else get_storage(url)
        shown = repr(source) if url is None else f"{source!r} in {where!r}"
        if url is None and source == name:
            raise ConfigError(f"warm_start: study {name!r} cannot warm-start from itself; name an earlier study")
        try:
            record = where.get_study(source)
        except StudyNotFoundError:
            known = sorted(s.name for s in where.list_studies())[:10]
            raise ConfigError(
                f"warm_start: no study {shown}; the storage holds {known or 'no studies'}. Name one of them, or "
                "give another storage as (name, url)"
            ) from None
        if url is not None and source == name and _same_study(storage, name, record):
            raise ConfigError(
                f"warm_start: ({source!r}, URL) names study {name!r} itself, in {where!r}: a study cannot "
                "warm-start from itself (its own trials would count twice); name an earlier study"
            )
        identity = (record.study_id, record.seed, record.datetime_created)
        if identity in seen:
            raise ConfigError(
                f"warm_start names study {source!r} twice ({seen[identity]} and {shown}, the same study): its "
                "trials would count twice; name it once"
            )
        seen[identity] = shown
        directions = study_directions(record)
        if len(directions) > 1:
            raise ConfigError(
                f"warm_start: study {shown} has {len(directions)} objectives; a warm start learns from a study "
                "with one objective (a single value per trial): leave it out"
            )
        if space is None:
            continue
        used: set[str] = set(record.system_attrs.get("space") or {})
        for t in where.get_trials(record.study_id, states=(TrialState.COMPLETE,), max_number=200):
            used.update(t.params)
        if used and not used & set(space):
            raise ConfigError(
                f"warm_start: study {shown} shares no parameter with this study's space ({', '.join(sorted(space))}; "
                f"it has {', '.join(sorted(used))}): it could teach the model nothing; leave it out"
            )


def _same_study(storage: BaseStorage, name: str, record: StudyRecord) -> bool:
    """Whether ``record``, read through another URL, is study ``name`` of ``storage`` (an existing study
    loaded by ``load_if_exists``): the same id, seed and creation time."""
    try:
        own = storage.get_study(name)
    except StudyNotFoundError:
        return False
    return (own.study_id, own.seed, own.datetime_created) == (record.study_id, record.seed, record.datetime_created)


def load_sources(sources: Sequence[tuple[str, str | None]], storage: BaseStorage) -> tuple[SourceStudy, ...]:
    """The sources' COMPLETE trials as they are now (a source that has gone is skipped, with a warning)."""
    out = []
    for source, url in sources:
        where = storage if url is None else get_storage(url)
        try:
            record = where.get_study(source)
        except StudyNotFoundError:
            logger.warning("warm start: study %r is no longer in %r (deleted, renamed or moved); this study "
                           "learns from its other sources only", source, where)
            continue
        trials = tuple(where.get_trials(record.study_id, states=(TrialState.COMPLETE,)))
        out.append(SourceStudy(source if url is None else f"{source} @ {where!r}", record.direction, trials))
    return tuple(out)
