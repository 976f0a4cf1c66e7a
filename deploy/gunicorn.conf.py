"""gunicorn settings for the web process (behind the TLS terminator)."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 30
keepalive = 5
# Requests are logged by path only: NHS numbers never travel in paths or query
# strings we log (STYLE.md section 12), so the access log holds no personal data.
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


# Metrics (GET /metrics): with PROMETHEUS_MULTIPROC_DIR set, each gunicorn worker
# writes its counters there and /metrics sums them; the folder starts empty and a
# worker that exits is marked dead (its gauges dropped, its counters kept).
def on_starting(server: object) -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        from sharedrecord.taskmetrics import multiprocess_dir_reset

        multiprocess_dir_reset(folder)


def child_exit(server: object, worker: object) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined,no-untyped-call]
