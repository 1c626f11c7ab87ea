"""``make all``: every figure and table this machine can run, then the verdict.

Where Docker with GPU support and the image (``make docker``) are there, the whole run happens
inside ``mirage-ae:<version>`` with results/ and .cache/ mounted from here. Otherwise it runs
natively in the environment ``make test`` uses (.venv): it records the machine, detects the GPU
through NVML (``scripts.harness.metadata``) and runs the parts below in order, each as the make
target of that name. A part whose target does not exist yet, or that needs a GPU this machine
lacks, is skipped with the reason; a part that fails is reported and the rest still run. The run
ends with a summary table (ok / skipped (why) / FAILED) and exits non-zero only if a part that
should have run failed (``make verify``'s verdict included).

Parts: environment, search (``make search-saved``, only with ``--from-scratch``), fig7 or hopper
(hopper on H100/H200), fig11, table5 (``--quick``: a reduced setting), check-saved (``--quick``:
b = 1 only), reference (the checker on the shipped ``expected/``), verify. Results land in
results/<gpu>/ (the figure targets) and results/make-all/<time>/ (environment record, per-part
logs, summary).

The environment record and the checker on expected/ are ``scripts/run_all_parts.py``.

The orchestration itself uses only the standard library, so ``make all`` needs no .venv on a
machine where everything runs inside the image.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scripts.harness import cli  # standard library only, as this module

PROG = "make all"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"  # where the figure targets publish (tests point it elsewhere)
HOPPER = ("h100", "h200")  # cards whose figure is `make hopper` (b = 1, 8, 16)
OK, FAILED, SKIPPED, INTERRUPTED = "ok", "FAILED", "skipped", "interrupted"
PART_NAMES = ("environment", "search", "fig7", "hopper", "fig11", "table5", "check-saved",
              "reference", "verify")
QUICK_SAVED = "saved_mugraphs/*_b1.json"
# Table 5 under QUICK=1: one limit, pruning on, 1 and 2 workers (seconds on 2 cores).
QUICK_TABLE5 = "TABLE5_ARGS=--ops 5 --workers 1,2 --cap 60 --no-pruning-ops="

DETECT = """\
import json
from scripts.harness.metadata import NoGpu, detect_gpu
try:
    info = detect_gpu()
except NoGpu as e:
    print(json.dumps({"error": str(e)}))
else:
    print(json.dumps({"name": info.name, "slug": info.slug}))
"""


@dataclass
class Options:
    quick: bool = False
    from_scratch: bool = False
    gpu: str | None = None
    force_gpu: bool = False
    resume: bool = False
    docker: str = "auto"  # auto | always | never
    image: str = "mirage-ae:latest"
    skip: frozenset = frozenset()
    only: frozenset = frozenset()
    out: Path = Path("results/make-all")
    make: str = "make"
    python: str = ".venv/bin/python"
    part_timeout: float | None = None


@dataclass
class Outcome:
    part: str
    status: str
    seconds: float = 0.0
    note: str = ""
    command: list = field(default_factory=list)


@dataclass
class Step:
    """One part of the run: a make target (``target``) or a command (``command``)."""

    part: str
    target: str | None = None
    command: list | None = None
    skip: str | None = None  # the reason it will not run
    note: str = ""
    aliases: tuple = ()  # other names SKIP= and ONLY= know it by
    variables: tuple = ()  # make variables for this target alone


@dataclass
class Gpu:
    slug: str | None
    name: str | None
    reason: str = ""  # why there is none


# --- running commands ---------------------------------------------------------------------------


def stream(cmd: list, log: Path | None, timeout: float | None = None) -> int:
    """Run ``cmd``, echo its output line by line and copy it to ``log``; its exit code (124 if it
    ran past ``timeout`` seconds, 127 if it cannot start)."""
    sink = open(log, "a") if log else None  # noqa: SIM115 (closed below)

    def emit(line: str) -> None:
        sys.stdout.write(line)
        sys.stdout.flush()
        if sink:
            sink.write(line)

    try:
        try:
            # Its own process group, so that a timeout or Ctrl-C reaches make's children too.
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", cwd=ROOT,
                                    start_new_session=True)
        except OSError as e:
            emit(f"{PROG}: cannot run {cmd[0]}: {e}\n")
            return 127
        fired = threading.Event()

        def stop() -> None:  # an interrupt first (fig7 keeps its records for RESUME=1), then kill
            fired.set()
            signal_group(proc, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                signal_group(proc, signal.SIGKILL)

        timer = threading.Timer(timeout, stop) if timeout else None
        if timer:
            timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                emit(line)
            code = proc.wait()
        except KeyboardInterrupt:
            # Pass the interrupt on (fig7 keeps what it measured for RESUME=1), then insist.
            signal_group(proc, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                signal_group(proc, signal.SIGKILL)
                proc.wait()
            raise
        finally:
            if timer:
                timer.cancel()
        if fired.is_set():
            emit(f"{PROG}: stopped after {timeout:g} s\n")
            return 124
        return code
    finally:
        if sink:
            sink.close()


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def quiet(cmd: list, timeout: float = 120) -> tuple[int, str]:
    """Exit code and combined output of a short command (127 if it cannot start)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", cwd=ROOT,
                           timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        return 127, f"{type(e).__name__}: {e}"
    return p.returncode, (p.stdout or "") + (p.stderr or "")


def last_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


# --- deciding what runs -------------------------------------------------------------------------


def make_vars(opts: Options, gpu: Gpu) -> list[str]:
    """The variables every child target gets (the make-side names of our options)."""
    out = []
    if gpu.slug:
        out.append(f"GPU={gpu.slug}")
    for flag, name in ((opts.force_gpu, "FORCE_GPU"), (opts.resume, "RESUME"),
                       (opts.quick, "QUICK"), (opts.from_scratch, "FROM_SCRATCH")):
        if flag:
            out.append(f"{name}=1")
    return out


def detect_gpu(opts: Options) -> Gpu:
    """The GPU this machine's environment sees (NVML name and slug), or why there is none."""
    code, out = quiet([opts.python, "-c", DETECT], timeout=300)
    if code != 0:
        return Gpu(None, None, f"GPU detection failed ({last_line(out) or f'exit {code}'})")
    try:
        info = json.loads(last_line(out))
    except json.JSONDecodeError:
        return Gpu(None, None, f"GPU detection said: {last_line(out)}")
    if "error" in info:
        return Gpu(None, None, info["error"])
    slug = (opts.gpu or info["slug"]).lower()
    return Gpu(slug, info["name"])


def published_runs(results: Path) -> list[str]:
    """results/<gpu>/ and results/fig11/<gpu>/ holding a published run (what verify checks)."""
    return sorted(str(m.parent.relative_to(results)) for pattern in ("*/metadata.json",
                                                                     "fig11/*/metadata.json")
                  for m in results.glob(pattern))


def plan(opts: Options, gpu: Gpu, python: str, env_out: Path,
         results: Path | None = None) -> list[Step]:
    """The parts of this run in order, each with the target or command it runs, or why not."""
    results = RESULTS if results is None else results
    no_gpu = "no GPU"
    figure = "hopper" if gpu.slug in HOPPER else "fig7"
    steps = [Step("environment", command=[python, "-m", "scripts.run_all_parts", "env",
                                          "--out", str(env_out)])]
    if opts.from_scratch:
        steps.append(Step("search", target="search-saved",
                          note="FROM_SCRATCH=1: saved_mugraphs/ regenerated by search"))
    steps += [
        Step(figure, target=figure, skip=None if gpu.slug else f"{no_gpu}: {gpu.reason}",
             note="b = 1, 8, 16" if figure == "hopper" else "b = 1, 8",
             aliases=("fig7", "hopper")),
        Step("fig11", target="fig11", skip=None if gpu.slug else no_gpu),
        Step("table5", target="table5", **table5_quick(opts)),
    ]
    if opts.quick:
        steps.append(Step("check-saved", command=[python, "-m", "mirage", "check",
                                                  *sorted(str(p.relative_to(ROOT)) for p in
                                                          ROOT.glob(QUICK_SAVED))],
                          note="QUICK=1: b = 1 files only"))
    else:
        steps.append(Step("check-saved", target="check-saved", note="every file, b = 1, 8, 16"))
    steps.append(Step("reference", command=[python, "-m", "scripts.run_all_parts", "reference"],
                      note="the checker on expected/"))
    runs = published_runs(results)
    if gpu.slug:
        steps.append(Step("verify", target="verify"))
    elif runs:
        steps.append(Step("verify", target="verify",
                          note=f"results measured elsewhere: {', '.join(runs)}"))
    else:
        steps.append(Step("verify", skip="no results/<gpu>/ to check (no GPU ran fig7/hopper "
                                         "here)"))
    for s in steps:
        aliases = {s.part, s.target, *s.aliases} - {None}
        if opts.only and not aliases & opts.only:
            s.skip = s.skip or "not in ONLY="
        if aliases & opts.skip:
            s.skip = "SKIP= names it"
    return steps


def table5_quick(opts: Options) -> dict:
    """QUICK=1's reduced Table 5, unless the caller set TABLE5_ARGS."""
    given = "TABLE5_ARGS" in os.environ or "TABLE5_ARGS=" in os.environ.get("MAKEFLAGS", "")
    if not opts.quick or given:
        return {}
    return {"variables": (QUICK_TABLE5,), "note": "QUICK=1: " + QUICK_TABLE5}


def target_missing(opts: Options, target: str, variables: list[str]) -> bool:
    code, out = quiet([opts.make, "--no-print-directory", "-n", target, *variables], timeout=60)
    return code != 0 and f"No rule to make target '{target}'" in out


# --- the native run -----------------------------------------------------------------------------


def run_step(opts: Options, step: Step, variables: list[str], logs: Path) -> Outcome:
    if step.skip:
        return Outcome(step.part, SKIPPED, note=step.skip)
    if step.target:
        if target_missing(opts, step.target, variables):
            return Outcome(step.part, SKIPPED,
                           note=f"no make target '{step.target}' in this checkout yet")
        cmd = [opts.make, "--no-print-directory", step.target, *variables, *step.variables]
    else:
        cmd = list(step.command)
    log = logs / f"{step.part}.log"
    print(f"\n==> {step.part}: {shlex.join(cmd)}", flush=True)
    start = time.monotonic()
    code = stream(cmd, log, opts.part_timeout)
    took = time.monotonic() - start
    if code == 0:
        return Outcome(step.part, OK, took, step.note, cmd)
    why = (f"ran past {opts.part_timeout:.0f} s" if code == 124 and opts.part_timeout
           else f"exit {code}")
    if step.part == "verify":
        why += ": the verdict failed (see its table above)"
    return Outcome(step.part, FAILED, took, f"{why}; log: {rel(log)}", cmd)


def rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def native(opts: Options, outcomes: list[Outcome], stamp: str, detect=detect_gpu) -> None:
    out = opts.out / stamp
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"{PROG}: running natively; logs in {rel(logs)}/", flush=True)
    # `make venv` builds .venv from requirements.txt (a no-op when it is up to date).
    start = time.monotonic()
    code = stream([opts.make, "--no-print-directory", "venv"], logs / "setup.log")
    if code != 0:
        outcomes.append(Outcome("setup", FAILED, time.monotonic() - start,
                                f"make venv: exit {code}; log: {rel(logs / 'setup.log')}"))
        return
    outcomes.append(Outcome("setup", OK, time.monotonic() - start, "make venv"))
    gpu = detect(opts)
    print(f"{PROG}: GPU: {gpu.name + ' (' + gpu.slug + ')' if gpu.slug else gpu.reason}",
          flush=True)
    variables = make_vars(opts, gpu)
    for step in plan(opts, gpu, opts.python, out / "environment.json"):
        if step.part == "environment" and os.environ.get("MIRAGE_ENV_RECORD") and not step.skip:
            # The image's entrypoint recorded it already.
            outcomes.append(Outcome(step.part, OK, note=f"recorded by the image's entrypoint: "
                                                        f"{os.environ['MIRAGE_ENV_RECORD']}"))
            continue
        try:
            outcomes.append(run_step(opts, step, variables, logs))
        except KeyboardInterrupt:
            outcomes.append(Outcome(step.part, INTERRUPTED, note="Ctrl-C; `make all RESUME=1` "
                                                                 "continues fig7/hopper"))
            raise


# --- Docker -------------------------------------------------------------------------------------


def docker_decision(opts: Options, env=os.environ) -> tuple[bool, str]:
    """Whether this run goes inside the image, and why (or why not)."""
    if env.get("MIRAGE_IN_DOCKER"):
        return False, "already inside the image"
    if opts.docker == "never":
        return False, "DOCKER=never"
    docker = shutil.which("docker")
    if not docker:
        return False, "no docker command on this machine"
    code, out = quiet([docker, "info", "--format", "{{.ServerVersion}}"], timeout=30)
    if code != 0:
        return False, f"no Docker engine reachable (docker info: {last_line(out)})"
    engine = last_line(out)
    code, out = quiet(["nvidia-smi", "-L"], timeout=60)
    if code != 0:
        return False, "no NVIDIA GPU on this host (nvidia-smi -L failed)"
    code, out = quiet([docker, "image", "inspect", "--format", "{{.Id}}", opts.image], timeout=30)
    if code != 0:
        return False, f"image {opts.image} not built here (make docker builds it)"
    code, out = quiet([docker, "run", "--rm", "--gpus", "all", "--entrypoint", "nvidia-smi",
                       opts.image, "-L"], timeout=300)
    if code != 0:
        return False, ("Docker cannot give a container the GPU (is the NVIDIA Container Toolkit "
                       f"installed?): {last_line(out)}")
    return True, f"Docker {engine}, image {opts.image}, GPU visible in the container"


def forwarded(opts: Options) -> list[str]:
    """``make all`` arguments that repeat this run's options inside the image."""
    args = ["DOCKER=never", *make_vars(opts, Gpu(opts.gpu, None))]
    if opts.skip:
        args.append("SKIP=" + ",".join(sorted(opts.skip)))
    if opts.only:
        args.append("ONLY=" + ",".join(sorted(opts.only)))
    if opts.part_timeout:
        args.append(f"PART_TIMEOUT={opts.part_timeout:g}")
    return args


def docker_command(opts: Options) -> list[str]:
    """``docker run`` of ``make all`` in the image: results/ and .cache/ are this checkout's,
    files are written as the calling user."""
    results, cache = ROOT / "results", ROOT / ".cache"
    results.mkdir(exist_ok=True)
    cache.mkdir(exist_ok=True)
    cmd = ["docker", "run", "--rm", "--gpus", "all", "--ipc=host",
           "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp", "-e", "USER=mirage",
           "-v", f"{results}:/workspace/results", "-v", f"{cache}:/workspace/.cache"]
    # No -t: without a TTY, docker passes a Ctrl-C on to the container (--sig-proxy).
    return [*cmd, opts.image, "make", "all", *forwarded(opts)]


def in_image(opts: Options, why: str) -> int:
    """``make all`` inside the image; its own summary ends the output. Its exit code."""
    cmd = docker_command(opts)
    print(f"{PROG}: inside the image ({why}):\n  {shlex.join(cmd)}", flush=True)
    try:
        code = stream(cmd, None)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; `make all RESUME=1` continues fig7/hopper", flush=True)
        return 130
    print(f"{PROG}: the run inside {opts.image} exited {code}; results in results/", flush=True)
    return code


# --- the summary --------------------------------------------------------------------------------


def summary(outcomes: list[Outcome], where: str) -> str:
    rows = [("part", "status", "time", "note")]
    for o in outcomes:
        took = f"{o.seconds:.0f} s" if o.status in (OK, FAILED, INTERRUPTED) else "-"
        rows.append((o.part, o.status, took, o.note))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"\n{PROG}: summary ({where})"]
    lines += ["  " + "  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3]
              for r in rows]
    counts = {s: sum(o.status == s for o in outcomes) for s in (OK, SKIPPED, FAILED)}
    verdict = {0: "ok", 130: "interrupted"}.get(exit_code(outcomes), "FAILED")
    lines.append(f"{PROG}: {counts[OK]} ok, {counts[SKIPPED]} skipped, {counts[FAILED]} failed"
                 f" -> {verdict}")
    return "\n".join(lines)


def exit_code(outcomes: list[Outcome]) -> int:
    if any(o.status == INTERRUPTED for o in outcomes):
        return 130
    return 1 if any(o.status == FAILED for o in outcomes) else 0


def _atomic_write(path: Path, text: str) -> None:
    """Temp file and rename (as mirage.ir.serialize.atomic_write_text, which this stdlib-only
    module cannot import): a reader never sees half a summary."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_summary(outcomes: list[Outcome], out: Path, text: str) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / "summary.txt", text.lstrip("\n") + "\n")
        doc = {"exit_code": exit_code(outcomes), "parts": [asdict(o) for o in outcomes]}
        _atomic_write(out / "summary.json", json.dumps(doc, indent=1) + "\n")
    except OSError as e:
        print(f"{PROG}: summary not written to {out} ({e})", file=sys.stderr)


# --- entry --------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> Options:
    p = cli.Parser(prog="python -m scripts.run_all", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="reduced mode: saved uGraphs at b=1 only, QUICK=1 to every target")
    p.add_argument("--from-scratch", action="store_true",
                   help="search the uGraphs first (make search) instead of the saved ones")
    p.add_argument("--gpu", default=None, help="card name results are filed under (GPU=)")
    p.add_argument("--force-gpu", action="store_true", help="FORCE_GPU=1 to the figure targets")
    p.add_argument("--resume", action="store_true", help="RESUME=1 to the figure targets")
    p.add_argument("--docker", default="auto", choices=("auto", "always", "never"),
                   help="run inside the image: auto (when usable), always, never")
    p.add_argument("--image", default="mirage-ae:latest", help="the image make docker built")
    p.add_argument("--skip", default="", help="comma list of parts not to run")
    p.add_argument("--only", default="", help="comma list of the only parts to run")
    p.add_argument("--out", type=Path, default=Path("results/make-all"),
                   help="where the run's environment record, logs and summary go")
    p.add_argument("--make", default=os.environ.get("MAKE_CMD", "make"), help="make command")
    p.add_argument("--python", default=".venv/bin/python",
                   help="the environment's python (what `make venv` builds)")
    p.add_argument("--part-timeout", type=float, default=None,
                   help="seconds one part may run before it counts as failed")
    a = p.parse_args(argv)

    def names(text: str) -> frozenset:
        got = frozenset(x.strip() for x in re.split(r"[,\s]+", text) if x.strip())
        unknown = sorted(got - set(PART_NAMES))
        if unknown:
            raise cli.UsageError(f"unknown part(s) {', '.join(unknown)} in SKIP=/ONLY= "
                                 f"(parts: {', '.join(PART_NAMES)})")
        return got

    if a.part_timeout is not None and not (a.part_timeout > 0 and a.part_timeout < 1e9):
        raise cli.UsageError(f"PART_TIMEOUT={a.part_timeout:g} is not a positive number of "
                             "seconds")
    return Options(a.quick, a.from_scratch, cli.gpu_name(a.gpu), a.force_gpu, a.resume,
                   a.docker, a.image, names(a.skip), names(a.only), out_dir(a.out), a.make,
                   a.python, a.part_timeout)


def out_dir(path: Path) -> Path:
    """ALL_OUT= / --out: no '..' in it, and inside this checkout only under results/ (so a
    typo cannot drop logs into the sources or expected/); elsewhere (/tmp/...) is the user's."""
    if ".." in Path(path).parts:
        raise cli.UsageError(f"ALL_OUT={str(path)!r} may not contain '..'")
    resolved, root = (ROOT / path).resolve(), ROOT.resolve()
    if (resolved == root or root in resolved.parents) and not (
            resolved == root / "results" or (root / "results") in resolved.parents):
        raise cli.UsageError(f"ALL_OUT={str(path)!r} is inside the checkout but not under "
                             "results/")
    if resolved.exists() and not resolved.is_dir():
        raise cli.UsageError(f"ALL_OUT={str(path)!r} is a file, not a directory")
    return Path(path)


def main(argv: list[str] | None = None, *, detect=detect_gpu) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(argv)
    except cli.UsageError as e:
        return cli.fail(PROG, e)
    except KeyboardInterrupt:
        return cli.fail(PROG, "interrupted before anything ran", cli.INTERRUPTED)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outcomes: list[Outcome] = []
    where = "natively"
    try:
        use, why = docker_decision(opts)
        if use:
            return in_image(opts, why)
        if opts.docker == "always":
            print(f"{PROG}: DOCKER=always, but the image cannot be used: {why}", file=sys.stderr)
            return 1
        print(f"{PROG}: not in Docker: {why}", flush=True)
        where = f"natively; {rel(opts.out / stamp)}/"
        native(opts, outcomes, stamp, detect)
    except KeyboardInterrupt:
        if not outcomes or outcomes[-1].status != INTERRUPTED:
            outcomes.append(Outcome("(make all)", INTERRUPTED, note="Ctrl-C"))
    except Exception as e:  # the run must end in its summary, never in a traceback
        outcomes.append(Outcome("(make all)", FAILED,
                                note=f"internal error: {type(e).__name__}: {e}"))
    text = summary(outcomes, where) + (
        f"\n{PROG}: results in results/<gpu>/ (figures, tables, verify's input) and "
        f"{rel(opts.out / stamp)}/ (environment.json, logs/, this summary)")
    print(text, flush=True)
    write_summary(outcomes, opts.out / stamp, text)
    code = exit_code(outcomes)
    if code == 130:
        done = [o.part for o in outcomes if o.status == OK]
        print(f"{PROG}: interrupted; kept: {', '.join(done) or 'no finished part'} and the "
              "records fig7/hopper/fig11 had measured; continue with `make all RESUME=1`",
              flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
