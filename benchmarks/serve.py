"""Throughput and latency of `segcli serve` at 1, 8 and 32 concurrent clients vs `segcli predict`'s
steady state on the same 512x512 images, and the server under a 4x overload burst.

    python benchmarks/serve.py [--data-root /work/shared/data] [--count 30] [--requests 64] [--threads N]

Both use one default-architecture model (random weights: speed does not depend on them) at
segcli's default precision (bf16 autocast on CPUs with fast bf16) and the ISBI images.
- predict: steady-state images/s = (COUNT - 1) / (t_COUNT - t_1), two real `segcli predict`
  processes, so start-up and model loading cancel out (as benchmarks/predict.py).
- serve: one `segcli serve` process, warmed up; N clients, each on its own keep-alive
  connection, post images back to back as multipart uploads (what `curl -F` sends), REQUESTS
  per level (at least 4 per client); images/s = answers / wall time; p50/p99 of the requests'
  latencies; every answer compared with predict's mask for the same image.
- overload: a second server with `--max-queue Q` gets 4Q clients at once, each posting BURST
  images back to back without waiting: masks (checked), 503s (with Retry-After), anything else,
  requests lost without an answer; the server's resident memory before, at its peak and after;
  /healthz and one more mask afterwards.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import data_root, make_checkpoint, segcli_cmd, spawn, wall  # noqa: E402

BOUNDARY = "segcli-bench-boundary"


def multipart(name: str, data: bytes) -> bytes:
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


class Server:
    """`segcli serve --port 0 ...` in its own process; the address comes from its stdout."""

    def __init__(self, model: Path, log: Path, *extra: object) -> None:
        self.log = log.open("w")
        self.proc = spawn(segcli_cmd("serve", "--model", model, "--port", 0, "--no-access-log", *extra),
                          stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            raise SystemExit(f"segcli serve did not start; see {log}")
        host, port = line[len("http://"):].rsplit(":", 1)
        self.host, self.port = host, int(port)
        while self.get("/healthz")[0] != 200:
            time.sleep(0.1)

    def get(self, path: str) -> tuple[int, str]:
        try:
            conn = HTTPConnection(self.host, self.port, timeout=30)
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read().decode()
        except OSError:
            return 0, ""

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def batches(self) -> tuple[float, float]:
        """(images, forward passes) so far, from /metrics."""
        text = self.get("/metrics")[1]
        values = {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines() if ln.startswith("segcli_batch_size_")}
        return values.get("segcli_batch_size_sum", 0.0), values.get("segcli_batch_size_count", 0.0)

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(120)
        self.log.close()
        return code


def post(conn: HTTPConnection, body: bytes) -> tuple[int, bytes, dict[str, str]]:
    conn.request("POST", "/predict", body=body,
                 headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    r = conn.getresponse()
    return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}


def load(server: Server, bodies: list[tuple[str, bytes]], clients: int, total: int) -> tuple[list[dict[str, Any]], float]:
    """`total` requests from `clients` threads, each with its own keep-alive connection."""
    counter = itertools.count()

    def client(_: int) -> list[dict[str, Any]]:
        conn, out = HTTPConnection(server.host, server.port, timeout=600), []
        while (i := next(counter)) < total:
            name, body = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            try:
                status, data, headers = post(conn, body)
            except OSError as e:  # an answer that never came: counted as lost
                out.append({"name": name, "status": None, "error": repr(e)})
                conn.close()
                conn = HTTPConnection(server.host, server.port, timeout=600)
                continue
            out.append({"name": name, "status": status, "body": data, "headers": headers,
                        "seconds": time.perf_counter() - t0})
        conn.close()
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for part in pool.map(client, range(clients)) for r in part]
    return results, time.perf_counter() - t0


def agreement(got: bytes, want: bytes) -> float:
    """Share of equal pixels of two mask PNGs (a request batched with others may differ from
    predict's mask in a pixel at the threshold, as predict's own --batch-size does)."""
    import io

    import numpy as np
    from PIL import Image

    a, b = (np.asarray(Image.open(io.BytesIO(x))) for x in (got, want))
    return float((a == b).mean()) if a.shape == b.shape else 0.0


def checked(results: list[dict[str, Any]], want: dict[str, bytes], keep: Optional[Path] = None) -> tuple[int, int, float]:
    """(masks byte-identical to predict's, masks correct: >= 99.9% of pixels equal, lowest agreement);
    answers that differ from predict's are written to `keep` for a look."""
    ok = [r for r in results if r["status"] == 200]
    for i, r in enumerate(x for x in ok if x["body"] != want[x["name"]]):
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            (keep / f"{i:03d}_{r['name']}").write_bytes(r["body"])
    same = sum(r["body"] == want[r["name"]] for r in ok)
    scores = [agreement(r["body"], want[r["name"]]) for r in ok]
    return same, sum(x >= 0.999 for x in scores), min(scores, default=1.0)


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def level(server: Server, bodies: list[tuple[str, bytes]], want: dict[str, bytes], clients: int,
          requests: int, predict_ips: float, keep: Optional[Path] = None) -> list[str]:
    total = max(requests, 4 * clients)
    images0, passes0 = server.batches()
    results, seconds = load(server, bodies, clients, total)
    images1, passes1 = server.batches()
    ok = [r for r in results if r["status"] == 200]
    same, correct, lowest = checked(results, want, keep / f"differing_{clients}" if keep else None)
    lat = [r["seconds"] * 1000 for r in ok]
    ips = len(ok) / seconds
    mean_batch = (images1 - images0) / max(1.0, passes1 - passes0)
    return [f"{clients}", f"{len(results)}", f"{ips:.2f}", f"{ips / predict_ips:.0%}", f"{percentile(lat, 50):.0f}",
            f"{percentile(lat, 99):.0f}", f"{mean_batch:.1f}", f"{correct}/{len(results)}",
            f"{same}/{len(results)}", f"{lowest:.4%}"]


def overload(model: Path, tmp: Path, bodies: list[tuple[str, bytes]], want: dict[str, bytes], queue: int,
             burst: int) -> list[str]:
    server = Server(model, tmp / "overload.log", "--max-queue", queue)
    load(server, bodies, 2, 4)  # warm up
    before, peak, stop = server.rss_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], server.rss_mib())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    clients = 4 * queue
    results, seconds = load(server, bodies, clients, clients * burst)
    stop.set()
    sampler.join()
    after = server.rss_mib()
    codes = [r["status"] for r in results]
    masks = [r for r in results if r["status"] == 200]
    same, correct, lowest = checked(results, want)
    refused = [r for r in results if r["status"] in (503, 429)]
    with_retry = sum("retry-after" in r["headers"] for r in refused)
    other = sum(c not in (200, 503, 429, None) for c in codes)
    lost = codes.count(None)
    alive = server.get("/healthz")[0] == 200
    again = load(server, bodies[:1], 1, 1)[0][0]
    alive = alive and again["status"] == 200 and agreement(again["body"], want[bodies[0][0]]) >= 0.999
    code = server.stop()
    return [f"{clients} x {burst}", f"{queue}", f"{len(results)} in {seconds:.1f} s",
            f"{len(masks)} ({correct} correct, {same} identical)",
            f"{len(refused)} ({with_retry} with Retry-After)", f"{other}", f"{lost}",
            f"{before:.0f} / {max(peak[0], before):.0f} / {after:.0f}", "yes" if alive else "NO", f"{code}"]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--count", type=int, default=30, help="images for predict's steady state (ISBI has 30; more repeat)")
    ap.add_argument("--requests", type=int, default=64, help="requests per concurrency level (at least 4 per client)")
    ap.add_argument("--clients", default="1,8,32", help="concurrency levels")
    ap.add_argument("--overload-queue", type=int, default=8, help="--max-queue of the overload server (4x as many clients)")
    ap.add_argument("--burst", type=int, default=4, help="requests each overload client sends back to back")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS for predict and the server alike (default: PyTorch's, one per core)")
    ap.add_argument("--keep", default=None, help="keep the images, masks and server logs in this folder")
    a = ap.parse_args()
    if a.threads:  # both sides' processes inherit it (see docs/deployment.md on a shared CPU)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(a.threads)

    src = sorted((data_root(a.data_root) / "isbi2012-membrane" / "images").resolve().glob("*.png"), key=lambda p: int(p.stem))
    tmp = Path(a.keep or tempfile.mkdtemp(prefix="segcli-bench-serve-"))
    try:
        run_all(a, src, tmp)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def predict_steady_state(model: Path, one: Path, folder: Path, tmp: Path, count: int) -> tuple[float, float, float]:
    """(images/s, wall of COUNT images, wall of 1 image) of `segcli predict`; its masks stay in tmp/outn."""
    t1 = wall(segcli_cmd("-q", "predict", one, "--model", model, "-o", tmp / "out1"))
    tn = wall(segcli_cmd("-q", "predict", folder, "--model", model, "-o", tmp / "outn"))
    return (count - 1) / (tn - t1), tn, t1


def run_all(a: argparse.Namespace, src: list[Path], tmp: Path) -> None:
    load_before = os.getloadavg()
    folder, one = tmp / "images", tmp / "one"
    folder.mkdir(parents=True, exist_ok=True)
    one.mkdir(exist_ok=True)
    for i in range(a.count):  # real copies: predict skips repeated inputs by resolved path
        shutil.copyfile(src[i % len(src)], folder / f"{i:03d}.png")
    shutil.copyfile(src[0], one / "000.png")
    model = make_checkpoint(tmp / "model.pt", in_channels=1)
    steady = [predict_steady_state(model, one, folder, tmp, a.count)]
    images = sorted(folder.glob("*.png"))
    want = {p.name: (tmp / "outn" / p.name).read_bytes() for p in images}
    bodies = [(p.name, multipart(p.name, p.read_bytes())) for p in images]

    server = Server(model, tmp / "serve.log")
    load(server, bodies, 8, 32)  # warm-up: the first pass of each batch size pays kernel set-up
    load(server, bodies, 1, 2)
    levels = [level(server, bodies, want, int(c), a.requests, steady[0][0], tmp) for c in a.clients.split(",")]
    rss = server.rss_mib()
    code = server.stop()
    steady.append(predict_steady_state(model, one, folder, tmp, a.count))  # load may have changed: again
    predict_ips = max(ips for ips, _, _ in steady)
    rows = [r[:3] + [f"{float(r[2]) / predict_ips:.0%}"] + r[4:] for r in levels]
    over = overload(model, tmp, bodies, want, a.overload_queue, a.burst)

    threads = os.environ.get("OMP_NUM_THREADS", "one per core")
    print(f"512x512 ISBI images, default model (resnet18 U-Net), precision {precision()}, "
          f"{os.cpu_count()} CPU cores, threads {threads}; load average (1, 5, 15 min) before "
          + " ".join(f"{x:.2f}" for x in load_before) + ", after " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print("segcli predict steady state, before and after the server: " + ", ".join(
        f"{ips:.2f} images/s ({a.count} images {tn:.1f} s, 1 image {t1:.1f} s)" for ips, tn, t1 in steady)
        + f"; the ratios use the faster, {predict_ips:.2f}\n")
    print(table(["clients", "requests", "images/s", "vs predict", "p50 ms", "p99 ms", "mean batch",
                 "correct masks", "byte-identical", "lowest pixel agreement"], rows))
    print(f"\nserver: resident memory {rss:.0f} MiB after the levels; SIGTERM exit code {code}\n")
    print(table(["overload clients x requests", "--max-queue", "answered", "masks", "503/429", "other", "lost",
                 "RSS MiB before / peak / after", "healthy after", "exit"], [over]))
    many = [r for r in rows if int(r[0]) >= 8]
    held = all(float(r[2]) >= 0.8 * predict_ips for r in many) and bool(many)
    print(f"\ntarget, at 8+ clients >= 80% of predict's steady state: {'holds' if held else 'MISSED'} ("
          + ", ".join(f"{r[3]} at {r[0]} clients" for r in many) + ")")


def precision() -> str:
    from segcli.device import select_device, select_precision

    return select_precision("auto", select_device("cpu")).name


if __name__ == "__main__":
    main()
