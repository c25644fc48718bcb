"""``lenet2vit predict``, ``export`` and ``serve``: use a trained run from the command line."""

from __future__ import annotations

import json
import sys

from lenet2vit.cli.flags import port, positive_float, positive_int
from lenet2vit.serving.predict import ServingError


def cmd_predict(args) -> int:
    from lenet2vit.serving.predict import format_predictions, predict_files

    results = predict_files(args.run, args.paths, k=args.topk, batch_size=args.batch_size, device=args.device)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_predictions(results, args.topk))
    failed = sum("error" in r for r in results)
    if failed:
        print(f"{failed} of {len(results)} file(s) could not be predicted", file=sys.stderr)
    return 1 if failed else 0


def cmd_export(args) -> int:
    from lenet2vit.serving.export import export_run

    res = export_run(args.run, format=args.format, out=args.out, exporter=args.exporter, opset=args.opset,
                     check=not args.no_check, tolerance=args.tolerance)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
        return 0
    how = f"{res.format}" + (f", {res.exporter} exporter, opset {res.opset}" if res.format == "onnx" else "")
    print(f"wrote {res.path} ({how}; dynamic batch dimension)")
    if res.max_abs_diff is not None:
        runtime = "onnxruntime" if res.format == "onnx" else "torch.jit"
        print(f"check: {runtime} vs PyTorch at batch {' and '.join(map(str, res.batches))}: "
              f"max abs diff {res.max_abs_diff:.3g} (logits up to {res.max_abs_logit:.3g})")
    return 0


def _split_runs(values: list[str]) -> list[str]:
    return [r for v in values for r in v.split(",") if r]


def cmd_serve(args) -> int:
    try:
        import uvicorn
    except ImportError:
        raise ServingError("serving needs FastAPI and uvicorn: pip install 'lenet2vit[serve]'") from None
    from lenet2vit.serving.app import create_app, explain_map

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    _check_port(args.host, args.port)
    runs = _split_runs(args.runs)
    app = create_app(runs, device=args.device, max_upload_mb=args.max_upload_mb,
                     explainer=None if args.no_explain else explain_map)
    names = ", ".join(m.id for m in app.state.models)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {names} on http://{host}:{args.port}/ (JSON API: POST /api/predict; Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1)
    return 0


def _check_port(host: str, port: int) -> None:
    """Fail with a clear message before loading models when the address cannot be listened on."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as e:
        raise ServingError(f"cannot listen on {host}:{port} ({e.strerror or e}); "
                           "check --host, or choose another --port if this one is taken") from None


def add_parsers(sub) -> None:
    p = sub.add_parser("predict", help="top-k classes of image files with a trained run")
    p.add_argument("run", help="run folder written by `lenet2vit train` (or its best.safetensors)")
    p.add_argument("paths", nargs="+", help="image files and folders (walked recursively)")
    p.add_argument("--topk", "-k", type=positive_int, default=5, help="classes shown per image (default 5)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, mps")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a trained run to ONNX or TorchScript, checked against PyTorch")
    p.add_argument("run", help="run folder written by `lenet2vit train`")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--out", help="output file (default RUN/model.onnx or RUN/model.pt)")
    p.add_argument("--exporter", choices=["auto", "legacy", "dynamo"], default="auto",
                   help="ONNX exporter: legacy (TorchScript-based, fast), dynamo (torch.export), "
                        "auto: legacy, then dynamo if it fails (default)")
    p.add_argument("--opset", type=positive_int, help="ONNX opset (default: the exporter's, 17 for legacy)")
    p.add_argument("--no-check", action="store_true", help="skip running the file against PyTorch")
    p.add_argument("--tolerance", type=positive_float, default=1e-3,
                   help="largest accepted logit difference, relative to logits above 1 (default 1e-3)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="web page and JSON API: upload an image, compare models, see explanations")
    p.add_argument("runs", nargs="+", help="run folders, comma-separated or space-separated")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port, default=8000)
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, mps")
    p.add_argument("--max-upload-mb", type=positive_float, default=10.0, help="largest accepted upload (default 10)")
    p.add_argument("--no-explain", action="store_true", help="never compute explanation maps")
    p.add_argument("--threads", type=positive_int, help="CPU threads for PyTorch (default: PyTorch's choice)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)
