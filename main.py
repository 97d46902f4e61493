"""AvatarGraph: a node-graph workflow engine whose flagship workflow is a conversational talking avatar.

    python main.py                       start the app (server + editor) on 127.0.0.1:8188
    python main.py run WORKFLOW.json [--set NODE.input=value | --set input=value ...] [--output PATH]
    python main.py validate WORKFLOW.json
    python main.py nodes
    python main.py models [install [ID ...]]
    python main.py --queue redis://HOST:PORT/DB [--no-local-worker]    the server on a shared Redis queue
    python main.py worker --queue redis://HOST:PORT/DB [--vram-budget GB] [--name NAME]   a cluster worker
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.app.cli import CliError, cmd_nodes, cmd_run, cmd_validate  # noqa: E402
from engine.queue.cluster import ClusterUnavailable, ClusterVersionError  # noqa: E402
from engine.app.malloc import limit_malloc_arenas  # noqa: E402
from engine.app.runtime import Runtime, RuntimeConfig  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description="AvatarGraph workflow engine")
    parser.add_argument("--listen", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data",
                        help="queue, history, settings, inputs and outputs (default ./data)")
    parser.add_argument("--models-dir", type=Path, default=None, help="model weights (default ./models)")
    parser.add_argument("--vram-budget", type=float, default=None, metavar="GB",
                        help="GPU memory the models may use; on a CPU-only machine this simulates a GPU budget")
    parser.add_argument("--enable-pack", action="append", default=[], metavar="NAME",
                        help="load this custom node pack from custom_nodes/ (packs run arbitrary code); '*' = all")
    parser.add_argument("--custom-nodes-dir", type=Path, default=ROOT / "custom_nodes",
                        help="where node packs live (default ./custom_nodes)")
    parser.add_argument("--token", default=None, help="API token required from clients (default: generated "
                                                      "when --listen is not loopback)")
    parser.add_argument("--no-local-worker", action="store_true", help="accept and serve only")
    _cache_options(parser)
    _cluster_options(parser, argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run a workflow headless")
    run.add_argument("workflow", type=Path)
    run.add_argument("--set", action="append", default=[], metavar="NODE.input=value",
                     help="set an input; a bare input=value sets it on the single node that has it")
    run.add_argument("--output", type=Path, default=None, help="copy the workflow's output file here")
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    val = sub.add_parser("validate", help="check a workflow without running it")
    val.add_argument("workflow", type=Path)

    sub.add_parser("nodes", help="list the registered node types")

    models = sub.add_parser("models", help="list models and their status; 'models install' installs them")
    models.add_argument("action", nargs="?", choices=["list", "install", "verify"], default="list")
    models.add_argument("ids", nargs="*")

    voice = sub.add_parser("voice", help="voice cloning: prepare a dataset, train an XTTS voice")
    voice.add_argument("voice_args", nargs=argparse.REMAINDER)

    worker = sub.add_parser("worker", help="run prompts and live sessions from a shared Redis queue")
    worker.add_argument("--name", default=argparse.SUPPRESS, help="this worker's name (default HOST-PID)")
    worker.add_argument("--vram-budget", type=float, default=argparse.SUPPRESS, metavar="GB")
    worker.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    worker.add_argument("--models-dir", type=Path, default=argparse.SUPPRESS)
    worker.add_argument("--enable-pack", action="append", default=argparse.SUPPRESS, metavar="NAME")
    _cluster_options(worker, argparse.SUPPRESS)
    return parser


def _cluster_options(parser: argparse.ArgumentParser, default: object) -> None:
    """Options a server and a worker share (accepted before or after the ``worker`` command)."""
    parser.add_argument("--queue", default=default, metavar="URL",
                        help="redis://HOST:PORT/DB: the distributed queue (default: SQLite in --data-dir)")
    parser.add_argument("--output-dir", type=Path, default=default,
                        help="outputs (default DATA_DIR/output); in a cluster, a folder every server can read")
    parser.add_argument("--input-dir", type=Path, default=default,
                        help="inputs and uploads (default DATA_DIR/input); in a cluster, shared like --output-dir")
    parser.add_argument("--heartbeat", type=float, default=default, metavar="S",
                        help="cluster heartbeat period in seconds (default 2; a worker silent for 3 periods is "
                             "lost and its prompts are queued again)")


def _cache_options(parser: argparse.ArgumentParser) -> None:
    """What node results are kept between prompts (ComfyUI's flags; ours is the default)."""
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--cache-classic", action="store_true",
                       help="ComfyUI's classic cache: keep only the results of the last prompt")
    modes.add_argument("--cache-lru", type=int, default=None, metavar="N",
                       help="keep the N most recently used node results (0: --cache-classic, as in ComfyUI)")
    modes.add_argument("--cache-none", action="store_true", help="keep nothing: every prompt runs every node")


def cache_settings(args: argparse.Namespace) -> tuple[str, int]:
    """(policy, entries) for engine.graph.cache.OutputCache from the cache flags (default: ours, "ram")."""
    opt = vars(args).get
    if opt("cache_none"):
        return "none", 0
    if opt("cache_classic") or opt("cache_lru") == 0:
        return "classic", RuntimeConfig.cache_entries
    if opt("cache_lru") is not None:
        return "lru", max(1, int(opt("cache_lru")))
    return "ram", RuntimeConfig.cache_entries


def make_runtime(args: argparse.Namespace) -> Runtime:
    opt = vars(args).get
    cache_policy, cache_entries = cache_settings(args)
    config = RuntimeConfig(data_dir=args.data_dir, models_dir=args.models_dir, vram_budget_gb=args.vram_budget,
                           enabled_packs=set(args.enable_pack), custom_nodes_dir=args.custom_nodes_dir,
                           queue_url=opt("queue"), output_dir=opt("output_dir"), input_dir=opt("input_dir"),
                           worker_name=opt("name"), heartbeat_s=opt("heartbeat") or 2.0,
                           cache_policy=cache_policy, cache_entries=cache_entries)
    runtime = Runtime(config)
    runtime.load_nodes()
    return runtime


def main(argv: list[str] | None = None) -> int:
    limit_malloc_arenas()  # before torch, onnxruntime or the server start threads (engine/app/malloc.py says why)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "models":
            from engine.app.models_cli import cli_install, cli_list
            from engine.models.catalogue import ModelStore
            store = ModelStore.default(args.models_dir)
            if args.action == "install":
                return cli_install(store, args.ids)
            if args.action == "verify":
                return cli_install(store, args.ids, verify_only=True)
            print(cli_list(store))
            return 0
        if args.command == "voice":
            from engine.files.folders import folders
            from nodes.speak.voice_cli import main as voice_main
            folders.configure(data_dir=args.data_dir, models_dir=args.models_dir)
            return voice_main(args.voice_args)
        if args.command == "worker" and not vars(args).get("queue"):
            raise CliError("a worker needs the shared queue: python main.py worker --queue redis://HOST:PORT/DB")
        import server  # noqa: F401  (before packs load: the ComfyUI shims then extend our package, not replace it)
        try:
            runtime = make_runtime(args)
        except (ClusterUnavailable, ClusterVersionError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
        if args.command == "worker":
            from server.cluster_worker import run_worker
            return run_worker(runtime)
        if args.command == "run":
            return cmd_run(runtime.executor, args.workflow, args.set, args.output, args.quiet)
        if args.command == "validate":
            return cmd_validate(runtime.registry, args.workflow)
        if args.command == "nodes":
            return cmd_nodes(runtime.registry)
        from server.app import serve
        return serve(runtime, host=args.listen, port=args.port, token=args.token,
                     local_worker=not args.no_local_worker)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
