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
from typing import Any, Callable, Iterable, Sequence

from tqdm.auto import tqdm

from ..storage import read_regular
from ..errors import InvalidParameter, ModelLoadError, check_param, one_line, printable
from ..models.files import MODEL_SUFFIXES, check_links
from ..registry import Registry, RegistryError, ScanRecord, SuspectOutcome
from .control import ErrorControl, resolve_control, score_panel
from .engines import Engine, get_engine
from .panel import OpenOptions, Panel, PanelEntry, Suspect
from .report import ScanReport


#: How deep :func:`suspects_in` walks below the folder it is given (a seized folder nested
#: deeper is refused in one line rather than walked without end).
MAX_DEPTH = 64

#: What ``stages`` a scan takes: every stage of each fingerprint, or the first alone.
SCAN_STAGES = ("all", "first")

#: The largest endpoints list :func:`endpoints_in` reads.
MAX_ENDPOINTS_BYTES = 1 << 20


def suspects_in(directory: str | os.PathLike[str]) -> list[Suspect]:
    """Every model file under ``directory`` (recursively, at most :data:`MAX_DEPTH` folders deep,
    by path), by suffix.

    The folder is walked without following symbolic links. As in a references folder
    (:func:`~tafa.models.files.check_links`), a link that leads out of the folder is refused;
    so is any other link, and anything that is not a regular file, among the model files:
    their targets are never opened or hashed (a link to the owner's own file, or to a system
    file, is not a file of the seized folder)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise InvalidParameter(f"The 'dir' parameter of scan must be a folder. Got {str(directory)!r} instead.")
    root = folder.expanduser().absolute()
    files: list[Path] = []
    odd: list[tuple[Path, str]] = []
    pending: list[tuple[Path, int]] = [(root, 0)]
    while pending:
        where, depth = pending.pop()
        try:
            with os.scandir(where) as listing:
                entries = list(listing)
        except OSError as error:
            raise InvalidParameter(f"Cannot list the folder {printable(str(where))!r} under --dir "
                                   f"({printable(error.strerror or error)}).") from None
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if depth + 1 > MAX_DEPTH:
                    raise InvalidParameter(f"The folder {printable(str(root))!r} nests folders more than {MAX_DEPTH} "
                                           "levels deep; refused (scan its sub-folders one by one).")
                pending.append((path, depth + 1))
            elif path.suffix in MODEL_SUFFIXES:
                if entry.is_symlink():
                    odd.append((path, "is a symbolic link"))
                elif not entry.is_file(follow_symlinks=False):
                    odd.append((path, "is not a regular file"))
                else:
                    files.append(path)
    if odd:
        check_links(root, [path for path, why in odd if why == "is a symbolic link"])  # out of the folder: refused
        path, why = min(odd)
        raise ModelLoadError(f"{printable(str(path))!r} {why}; a scanned folder's model files must be regular files "
                             f"in it, never links (copy the file it points to into the folder); refused"
                             + (f" ({len(odd)} such entries)." if len(odd) > 1 else "."))
    return [Suspect(str(path)) for path in sorted(files)]


def endpoints_in(path: str | os.PathLike[str]) -> list[Suspect]:
    """The endpoint URLs listed in a text file, one per line (blank lines and ``#`` comments
    skipped): a regular file of at most :data:`MAX_ENDPOINTS_BYTES` bytes."""
    data = read_regular(path, limit=MAX_ENDPOINTS_BYTES, what="The 'endpoints' parameter of scan: the file")

    def refuse(why: str) -> InvalidParameter:
        return InvalidParameter(f"The 'endpoints' parameter of scan must be a readable text file of at most "
                                f"{MAX_ENDPOINTS_BYTES} bytes. Got {printable(str(path))!r} instead ({why}).")

    try:
        lines = data.decode().splitlines()
    except UnicodeDecodeError as error:
        raise refuse(printable(error)) from None
    urls = [line.split("#", 1)[0].strip() for line in lines]
    for url in urls:
        if url and not url.startswith(("http://", "https://")):
            raise InvalidParameter(f"The 'endpoints' file {printable(str(path))!r} must list http(s) URLs, one per "
                                   f"line. Got {printable(url)[:200]!r} instead.")
    return [Suspect(url) for url in urls if url]


def scan(suspects: Iterable[str | os.PathLike[str] | Suspect] = (), *,
         registry: Registry | str | os.PathLike[str] | None = None,
         engine: str | Engine = "local", workers: int | None = None, address: str | None = None,
         options: OpenOptions | None = None, fingerprints: Sequence[str] | None = None,
         control: str | None = None, alpha: float | None = None,
         panel: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
         family_alpha: float | None = None, stages: str = "all", resume: str | None = None, progress: bool = False,
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
    check_param("stages", stages, "'all' or 'first'", stages in SCAN_STAGES, caller="scan")
    owned = not isinstance(registry, Registry)
    store = registry if isinstance(registry, Registry) else Registry(registry)
    try:
        runner = engine if isinstance(engine, Engine) else get_engine(engine, workers=workers, address=address)
        listed = [item if isinstance(item, Suspect) else Suspect.parse(item) for item in suspects]
        if resume is not None:
            if listed or fingerprints is not None or options is not None or family_alpha is not None or \
                    control is not None or alpha is not None or panel is not None or stages != "all":
                raise InvalidParameter("A resumed scan keeps its own suspects, fingerprints, options and "
                                       "error control; give only resume=SCAN_ID (and an engine).")
            options, wanted, decider, stages = stored_setup(store.scan(resume))
            fingerprint_panel = _panel(store, [item["name"] for item in wanted], decider, stages)
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
            fingerprint_panel = _panel(store, names, decider, stages)
            if decider.uses_panel:
                members = _panel_members(store, panel)
                decider = score_panel(kind, level, fingerprint_panel.columns(), members,
                                      lambda sources: runner.run([Suspect.parse(s) for s in sources],
                                                                 fingerprint_panel.payload(), options),
                                      progress=progress)
            if decider.uses_panel and stages != "first":  # file suspects get their weight test too
                decider.weighed = [entry.name for entry in fingerprint_panel.entries if entry.fingerprint.owner_layers]
            config = {"fingerprints": [_recorded(entry) for entry in fingerprint_panel.entries],
                      "options": options.to_dict(), "control": decider.to_dict(), "stages": stages,
                      **runner.describe()}
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


def stored_setup(record: ScanRecord) -> tuple[OpenOptions, list[dict[str, str]], ErrorControl, str]:
    """The options, fingerprints (``{"name", "sha256"}`` each), error control and stages a scan
    was begun with, read back from its record and checked for types: a configuration edited in
    the registry is one :class:`~tafa.registry.RegistryError`, never a traceback (a scan begun
    before scans ran later stages ran the first alone)."""
    config = record.config
    try:
        check_param("configuration", type(config).__name__, "an object", isinstance(config, dict),
                    caller="a stored scan")
        wanted = config.get("fingerprints")
        check_param("fingerprints", "...", "a list of objects with a name and a sha256 (texts)",
                    isinstance(wanted, list) and all(isinstance(item, dict) and isinstance(item.get("name"), str)
                                                     and isinstance(item.get("sha256"), str) for item in wanted),
                    caller="a stored scan")
        stored = config.get("options", {})
        check_param("options", type(stored).__name__, "an object", isinstance(stored, dict), caller="a stored scan")
        options = OpenOptions.from_dict(stored)
        if "control" in config:
            decider = ErrorControl.from_dict(config["control"])
        else:  # a scan begun before error controls were recorded
            old = config.get("family_alpha")
            decider = ErrorControl("per-fingerprint" if old is None else "bonferroni", old)
            decider._check_types()
        stages = config.get("stages", "first")
        check_param("stages", stages, "'all' or 'first'", stages in SCAN_STAGES, caller="a stored scan")
    except (InvalidParameter, TypeError) as error:
        raise RegistryError(f"Scan {printable(record.id)!r} cannot be resumed: its stored configuration is not one a "
                            f"scan writes ({one_line(error)}); the registry was modified outside tafa. Start a new "
                            "scan.") from None
    return options, [{"name": item["name"], "sha256": item["sha256"]} for item in wanted or []], decider, stages


def _panel(store: Registry, names: Sequence[str], decider: ErrorControl, stages: str) -> Panel:
    """The scan's fingerprints with their later stages unless ``stages`` is ``"first"`` (every one,
    each a column of the table, when the control uses a null panel; else those each stored rule
    calibrated); under Bonferroni each rule re-derived at ``alpha / len(names)`` from its
    reference scores, per fingerprint with an ``alpha`` at it."""
    registered = store.fingerprints(names)
    level = None
    if decider.kind == "bonferroni" and decider.alpha is not None:
        level = decider.alpha / len(registered)
    elif decider.kind == "per-fingerprint":
        level = decider.alpha
    if level is not None:
        for item in registered:
            if item.calibration is not None:  # the stages its references support at that level
                item.calibration = item.calibration.at_supported(level)
    mode = "first" if stages == "first" else "columns" if decider.uses_panel else "rule"
    return Panel(registered, mode=mode)


def _recorded(entry: PanelEntry) -> dict[str, Any]:
    """What a scan records of one fingerprint: name, hash, its calibration as the scan decides
    with it (re-derived at the scan's alpha), its references' scores (the report draws them) and
    the names of its later stages when the scan does not run them (the report says so)."""
    calibration = entry.registered.calibration
    return {"name": entry.name, "sha256": entry.registered.sha256,
            "calibration": None if calibration is None else calibration.summary(),
            "reference_scores": None if calibration is None else   # the first stage's: what the report draws
            [float(v) for v in calibration.stages[0].reference_scores],
            "not_scanned": entry.fingerprint.stage_names()[1 + len(entry.later):]}


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
    computed: dict[str, SuspectOutcome] = {}  # what this run decided: the report is checked against it
    try:
        with tqdm(total=len(todo), unit="suspect", desc=f"scan {scan_id}", disable=not progress,
                  leave=False, dynamic_ncols=True) as bar:
            for outcome in runner.run(todo, panel.payload(), options):
                outcome = decider.decide(outcome)
                computed[outcome.source] = outcome
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
            decided = decider.decide_scan(store.outcomes(scan_id))
            computed.update((outcome.source, outcome) for outcome in decided)
            store.record(scan_id, decided)
        status = "finished"
    finally:
        store.record(scan_id, buffer)
        store.end_scan(scan_id, status, time.perf_counter() - started)
    return ScanReport.load(store, scan_id, run={"suspects": len(todo), "seconds": time.perf_counter() - started,
                                                **runner.describe()}, computed=computed)
