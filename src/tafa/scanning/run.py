"""One scan: many suspects against every registered fingerprint that fits them.

:func:`scan` lists the suspects, snapshots the registered fingerprints into a
:class:`~tafa.scanning.panel.Panel`, records a new scan in the registry, runs an engine and
writes each suspect's outcome (all its findings in one transaction) as it arrives. Outcomes
are written in small batches (at most ``flush_seconds`` apart), so an interrupted scan loses
at most the last batch, which :func:`scan` with ``resume=SCAN_ID`` does again: it checks only
the suspects not yet done (failed ones are tried again) against the same fingerprints.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tqdm.auto import tqdm

from ..decide.threshold import calibrate
from ..errors import InvalidParameter, check_param
from ..models.files import MODEL_SUFFIXES
from ..registry import Registry, RegistryError, SuspectOutcome
from .engines import Engine, get_engine
from .panel import OpenOptions, Panel, Suspect
from .report import ScanReport


def suspects_in(directory: str | os.PathLike[str]) -> list[Suspect]:
    """Every model file under ``directory`` (recursively, by path), by suffix."""
    folder = Path(directory)
    if not folder.is_dir():
        raise InvalidParameter(f"The 'dir' parameter of scan must be a folder. Got {str(directory)!r} instead.")
    return [Suspect.parse(path) for path in sorted(folder.rglob("*"))
            if path.is_file() and path.suffix in MODEL_SUFFIXES]


def endpoints_in(path: str | os.PathLike[str]) -> list[Suspect]:
    """The endpoint URLs listed in a text file, one per line (blank lines and ``#`` comments skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidParameter(f"The 'endpoints' parameter of scan must be a readable text file. "
                               f"Got {str(path)!r} instead ({error}).") from None
    urls = [line.split("#", 1)[0].strip() for line in lines]
    for url in urls:
        if url and not url.startswith(("http://", "https://")):
            raise InvalidParameter(f"The 'endpoints' file {str(path)!r} must list http(s) URLs, one per line. "
                                   f"Got {url!r} instead.")
    return [Suspect(url) for url in urls if url]


def scan(suspects: Iterable[str | os.PathLike[str] | Suspect] = (), *,
         registry: Registry | str | os.PathLike[str] | None = None,
         engine: str | Engine = "local", workers: int | None = None, address: str | None = None,
         options: OpenOptions | None = None, fingerprints: Sequence[str] | None = None,
         family_alpha: float | None = None, resume: str | None = None, progress: bool = False,
         on_outcome: Callable[[SuspectOutcome], None] | None = None,
         on_start: Callable[[str], None] | None = None, flush_seconds: float = 1.0) -> ScanReport:
    """Check every suspect against every registered fingerprint that fits it; record the verdicts.

    ``suspects`` are file paths, endpoint URLs or :class:`Suspect` s. ``registry`` is a
    :class:`~tafa.registry.Registry` or its path (default: the user's registry).
    ``fingerprints`` restricts the scan to those names. ``engine`` is ``"local"`` (``workers``
    processes, default one per core; 0: in this process) or ``"ray"`` (``address`` of a
    cluster, else a local instance), or an :class:`~tafa.scanning.engines.Engine`.
    Each fingerprint decides with its stored calibration, whose false-positive bound holds per
    fingerprint: an independent suspect checked against N fingerprints may match one of them
    with a chance up to N times that. ``family_alpha`` bounds that chance instead: every
    threshold is re-calibrated from its stored reference scores at ``family_alpha / N``
    (Bonferroni over the scan's N fingerprints).
    ``resume`` continues the scan of that id with its own suspects, fingerprints, options and
    ``family_alpha`` (``suspects``, ``fingerprints``, ``options`` and ``family_alpha`` must then
    be left out). ``on_outcome`` is
    called with each outcome after it is queued for writing, ``on_start`` with the scan id
    once it is recorded.
    """
    check_param("flush_seconds", flush_seconds, "a number >= 0",
                isinstance(flush_seconds, (int, float)) and flush_seconds >= 0, caller="scan")
    owned = not isinstance(registry, Registry)
    store = registry if isinstance(registry, Registry) else Registry(registry)
    try:
        runner = engine if isinstance(engine, Engine) else get_engine(engine, workers=workers, address=address)
        listed = [item if isinstance(item, Suspect) else Suspect.parse(item) for item in suspects]
        if resume is not None:
            if listed or fingerprints is not None or options is not None or family_alpha is not None:
                raise InvalidParameter("A resumed scan keeps its own suspects, fingerprints, options and "
                                       "family_alpha; give only resume=SCAN_ID (and an engine).")
            record = store.scan(resume)
            options = OpenOptions.from_dict(record.config.get("options", {}))
            wanted = record.config["fingerprints"]
            panel = _panel(store, [item["name"] for item in wanted], record.config.get("family_alpha"))
            for item, entry in zip(wanted, panel.entries):
                if entry.registered.sha256 != item["sha256"]:
                    raise RegistryError(f"Fingerprint {item['name']!r} changed since scan {resume!r} began "
                                        f"({item['sha256'][:12]} then, {entry.registered.sha256[:12]} now); "
                                        "start a new scan.")
            scan_id = resume
            todo = [Suspect(source) for source, _ in store.resume_scan(scan_id, engine=runner.name)]
        else:
            listed = list(dict.fromkeys(listed))
            if not listed:
                raise InvalidParameter("The 'suspects' parameter of scan must name at least one model file or "
                                       "endpoint. Got none instead.")
            options = options or OpenOptions()
            names = list(fingerprints) if fingerprints is not None else store.names()
            if not names:
                raise RegistryError(f"The registry {str(store.path)!r} holds no fingerprints; add one with "
                                    "tafa registry add FILE --name NAME.")
            panel = _panel(store, names, family_alpha)
            config = {"fingerprints": [{"name": e.name, "sha256": e.registered.sha256,
                                        "calibration": None if e.registered.calibration is None
                                        else e.registered.calibration.summary()} for e in panel.entries],
                      "options": options.to_dict(), "family_alpha": family_alpha, **runner.describe()}
            scan_id = store.begin_scan([s.source for s in listed], [s.kind for s in listed],
                                       engine=runner.name, config=config)
            todo = listed
        if on_start is not None:
            on_start(scan_id)
        return _run(store, scan_id, runner, panel, todo, options, progress, on_outcome, flush_seconds)
    finally:
        if owned:
            store.close()


def _panel(store: Registry, names: Sequence[str], family_alpha: float | None) -> Panel:
    """The scan's fingerprints; with ``family_alpha``, each calibration re-derived at
    ``family_alpha / len(names)`` from its reference scores."""
    registered = store.fingerprints(names)
    if family_alpha is not None:
        check_param("family_alpha", family_alpha, "a number in (0, 1)",
                    isinstance(family_alpha, (int, float)) and 0 < family_alpha < 1, caller="scan")
        for item in registered:
            if item.calibration is not None:
                item.calibration = calibrate(item.calibration.reference_scores, family_alpha / len(registered))
    return Panel(registered)


def _run(store: Registry, scan_id: str, runner: Engine, panel: Panel, todo: Sequence[Suspect],
         options: OpenOptions, progress: bool, on_outcome: Callable[[SuspectOutcome], None] | None,
         flush_seconds: float) -> ScanReport:
    started = time.perf_counter()
    buffer: list[SuspectOutcome] = []
    last_flush = time.perf_counter()
    status = "interrupted"
    try:
        with tqdm(total=len(todo), unit="suspect", desc=f"scan {scan_id}", disable=not progress,
                  leave=False, dynamic_ncols=True) as bar:
            for outcome in runner.run(todo, panel.payload(), options):
                buffer.append(outcome)
                bar.update(1)
                if time.perf_counter() - last_flush >= flush_seconds:
                    store.record(scan_id, buffer)
                    buffer, last_flush = [], time.perf_counter()
                if on_outcome is not None:
                    on_outcome(outcome)
        status = "finished"
    finally:
        store.record(scan_id, buffer)
        store.end_scan(scan_id, status, time.perf_counter() - started)
    return ScanReport.load(store, scan_id, run={"suspects": len(todo), "seconds": time.perf_counter() - started,
                                                **runner.describe()})
