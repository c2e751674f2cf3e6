"""One scan: many suspects against every registered fingerprint that fits them.

:func:`scan` lists the suspects, snapshots the registered fingerprints into a
:class:`~tafa.scanning.panel.Panel`, records a new scan in the registry, runs an engine and
decides each suspect's outcome under the scan's error control (:mod:`.control`: family-wise by
default, over a null panel scored first) and writes it (all its findings in one transaction) as
it arrives. Outcomes
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

from ..errors import InvalidParameter, check_param
from ..models.files import MODEL_SUFFIXES
from ..registry import Registry, RegistryError, SuspectOutcome
from .control import ErrorControl, resolve_control, score_panel
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
         control: str | None = None, alpha: float | None = None,
         panel: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
         family_alpha: float | None = None, resume: str | None = None, progress: bool = False,
         on_outcome: Callable[[SuspectOutcome], None] | None = None,
         on_start: Callable[[str], None] | None = None, flush_seconds: float = 1.0) -> ScanReport:
    """Check every suspect against every registered fingerprint that fits it; record the verdicts.

    ``suspects`` are file paths, endpoint URLs or :class:`Suspect` s. ``registry`` is a
    :class:`~tafa.registry.Registry` or its path (default: the user's registry).
    ``fingerprints`` restricts the scan to those names. ``engine`` is ``"local"`` (``workers``
    processes, default one per core; 0: in this process) or ``"ray"`` (``address`` of a
    cluster, else a local instance), or an :class:`~tafa.scanning.engines.Engine`.
    ``control`` says how the scan decides (see :mod:`tafa.scanning.control`; ``control`` and
    ``alpha`` not given come from the registry's defaults, :meth:`~tafa.registry.Registry.defaults`,
    family-wise at 0.05 unless set otherwise): ``"family"`` bounds by ``alpha`` the chance
    that an independent suspect matches ANY of the scan's fingerprints, by max-T over a null
    panel -- ``panel`` (a folder of model files, or a list of them), else the registry's panel --
    scored against every fingerprint first; ``"fdr"`` lists (suspect, fingerprint) pairs at
    false-discovery rate ``alpha``
    (Benjamini-Hochberg over the panel's p-values, decided when the scan finishes);
    ``"per-fingerprint"`` decides with each stored calibration (re-derived at ``alpha`` when
    given), whose bound holds per fingerprint only; ``"bonferroni"`` re-derives each at
    ``alpha / N``. ``family_alpha=A`` is the older spelling of ``control="bonferroni", alpha=A``.
    ``resume`` continues the scan of that id with its own suspects, fingerprints, options and
    control (``suspects``, ``fingerprints``, ``options``, ``control``, ``alpha``, ``panel`` and
    ``family_alpha`` must then be left out). ``on_outcome`` is
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
            if listed or fingerprints is not None or options is not None or family_alpha is not None or \
                    control is not None or alpha is not None or panel is not None:
                raise InvalidParameter("A resumed scan keeps its own suspects, fingerprints, options and "
                                       "error control; give only resume=SCAN_ID (and an engine).")
            record = store.scan(resume)
            options = OpenOptions.from_dict(record.config.get("options", {}))
            wanted = record.config["fingerprints"]
            if "control" in record.config:
                decider = ErrorControl.from_dict(record.config["control"])
            else:  # a scan begun before error controls were recorded
                old = record.config.get("family_alpha")
                decider = ErrorControl("per-fingerprint" if old is None else "bonferroni", old)
            fingerprint_panel = _panel(store, [item["name"] for item in wanted], decider)
            for item, entry in zip(wanted, fingerprint_panel.entries):
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
            kind, level = resolve_control(control, alpha, family_alpha, store.defaults())
            decider = ErrorControl(kind, level, list(names))
            fingerprint_panel = _panel(store, names, decider)
            if decider.uses_panel:
                members = _panel_members(store, panel)
                decider = score_panel(kind, level, [e.name for e in fingerprint_panel.entries], members,
                                      lambda sources: runner.run([Suspect.parse(s) for s in sources],
                                                                 fingerprint_panel.payload(), options))
            config = {"fingerprints": [{"name": e.name, "sha256": e.registered.sha256,
                                        "calibration": None if e.registered.calibration is None
                                        else e.registered.calibration.summary()} for e in fingerprint_panel.entries],
                      "options": options.to_dict(), "control": decider.to_dict(), **runner.describe()}
            scan_id = store.begin_scan([s.source for s in listed], [s.kind for s in listed],
                                       engine=runner.name, config=config)
            todo = listed
        if on_start is not None:
            on_start(scan_id)
        return _run(store, scan_id, runner, fingerprint_panel, decider, todo, options, progress, on_outcome,
                    flush_seconds)
    finally:
        if owned:
            store.close()


def _panel(store: Registry, names: Sequence[str], decider: ErrorControl) -> Panel:
    """The scan's fingerprints; under Bonferroni each calibration re-derived at
    ``alpha / len(names)`` from its reference scores, per fingerprint with an ``alpha`` at it."""
    registered = store.fingerprints(names)
    level = None
    if decider.kind == "bonferroni" and decider.alpha is not None:
        level = decider.alpha / len(registered)
    elif decider.kind == "per-fingerprint":
        level = decider.alpha
    if level is not None:
        for item in registered:
            if item.calibration is not None:
                item.calibration = item.calibration.at(level)
    return Panel(registered)


def _panel_members(store: Registry, panel: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None,
                   ) -> list[tuple[str, str | None, str]]:
    """The null panel's ``(source, recorded sha256, group)``: the model files in ``panel`` (a
    folder, recursively: each sub-folder one group, the files at its top one more; or a list
    of files, one group), else the registry's panel (one group)."""
    if panel is None:
        return [(source, sha256, "registry") for source, sha256 in store.panel()]
    if isinstance(panel, (str, os.PathLike)):
        root = Path(panel)
        if not root.is_dir():
            raise InvalidParameter(f"The 'panel' parameter of scan must be a folder of model files. "
                                   f"Got {str(panel)!r} instead.")
        members: list[tuple[str, str | None, str]] = []
        for suspect in suspects_in(root):
            inside = Path(suspect.source).relative_to(root.expanduser().absolute()).parts
            members.append((suspect.source, None, inside[0] if len(inside) > 1 else root.name))
        return members
    return [(str(Path(item).expanduser().absolute()), None, "panel") for item in panel]


def _run(store: Registry, scan_id: str, runner: Engine, panel: Panel, decider: ErrorControl,
         todo: Sequence[Suspect], options: OpenOptions, progress: bool,
         on_outcome: Callable[[SuspectOutcome], None] | None, flush_seconds: float) -> ScanReport:
    started = time.perf_counter()
    buffer: list[SuspectOutcome] = []
    last_flush = time.perf_counter()
    status = "interrupted"
    try:
        with tqdm(total=len(todo), unit="suspect", desc=f"scan {scan_id}", disable=not progress,
                  leave=False, dynamic_ncols=True) as bar:
            for outcome in runner.run(todo, panel.payload(), options):
                outcome = decider.decide(outcome)
                buffer.append(outcome)
                bar.update(1)
                if time.perf_counter() - last_flush >= flush_seconds:
                    store.record(scan_id, buffer)
                    buffer, last_flush = [], time.perf_counter()
                if on_outcome is not None:
                    on_outcome(outcome)
        store.record(scan_id, buffer)
        buffer = []
        if decider.kind == "fdr":  # a candidate list needs the whole scan's p-values
            store.record(scan_id, decider.decide_scan(store.outcomes(scan_id)))
        status = "finished"
    finally:
        store.record(scan_id, buffer)
        store.end_scan(scan_id, status, time.perf_counter() - started)
    return ScanReport.load(store, scan_id, run={"suspects": len(todo), "seconds": time.perf_counter() - started,
                                                **runner.describe()})
