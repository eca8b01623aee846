"""Serve a new model version, or go back to an older one, while the stack serves.

    python -m deploy.models status
    python -m deploy.models load                    # the newest version on disk
    python -m deploy.models rollback [--version N]  # default: the one before

Each command rewrites the version policy and decision threshold in
``config.pbtxt`` (so the choice survives a Triton restart), then asks Triton's
model-control API on its localhost port (nginx never exposes it) to load the
model again. Triton loads the new version beside the one serving and switches
only once it is ready, so requests keep being answered through the swap.
"""

import argparse
import sys
import time

import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from deploy import stack
from training.repository import disk_versions, pin_version

MODEL = stack.MODEL_NAME


def served_versions(client) -> list[int]:
    try:
        return sorted(int(v) for v in client.get_model_metadata(MODEL)["versions"])
    except InferenceServerException:
        return []


def serve(client, model_dir, version: int | None, timeout_s: float = 120) -> int:
    """Pin ``version`` (None: newest) in the config, load it, wait until served."""
    try:
        threshold = pin_version(model_dir, version)
    except ValueError as exc:
        sys.exit(str(exc))
    target = version or disk_versions(model_dir)[-1]
    client.load_model(MODEL)

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if served_versions(client) == [target] and client.is_model_ready(MODEL):
            print(f"serving version {target}, decision threshold {threshold:.6f}")
            return target
        time.sleep(0.2)
    sys.exit(f"Triton did not switch to version {target} within {timeout_s} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["status", "load", "rollback"])
    parser.add_argument("--version", type=int, help="rollback target")
    args = parser.parse_args()
    settings = stack.load_settings()
    model_dir = stack.ROOT / settings.model_repository / MODEL
    client = triton_http.InferenceServerClient(f"127.0.0.1:{settings.triton_http_port}")

    try:
        client.is_server_live()
    except (ConnectionError, OSError, InferenceServerException):
        sys.exit(
            f"on disk: {disk_versions(model_dir)}; Triton is not answering on "
            f"127.0.0.1:{settings.triton_http_port}: start the stack with make up"
        )
    served = served_versions(client)
    if args.command == "status":
        config = client.get_model_config(MODEL)
        threshold = config["parameters"]["decision_threshold"]["string_value"]
        print(
            f"on disk: {disk_versions(model_dir)}  served: {served}  "
            f"threshold: {threshold}"
        )
    elif args.command == "load":
        serve(client, model_dir, None)
    else:
        older = [v for v in disk_versions(model_dir) if served and v < served[0]]
        target = args.version or (older[-1] if older else None)
        if target is None:
            sys.exit(f"nothing older than the served version {served} to go back to")
        serve(client, model_dir, target)


if __name__ == "__main__":
    main()
