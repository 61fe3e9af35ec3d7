"""The one settings object. Every environment variable Tuneboard reads is a field here."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNEBOARD_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///var/tuneboard.db"
    broker_url: str = "sqla+sqlite:///var/broker.db"
    data_dir: Path = Path("var/data")

    host: str = "127.0.0.1"
    port: int = 8000

    # "development" (what `make run` is) or anything else, e.g. "production": then session
    # cookies are sent over HTTPS only (and HSTS is on).
    env: str = "development"
    # Signs session cookies. Unset (the default), a random key is made on first start and
    # kept in <data_dir>/secret_key, readable by its owner only (app/web/secret_key.py). Set
    # it only where several web servers must share one key: at least 32 random characters,
    #   python -c "import secrets; print(secrets.token_urlsafe(48))"
    secret_key: str | None = None
    session_days: int = 14
    # Host names this server answers to (the Host header; any port). Anything else gets a
    # 400, which stops DNS-rebinding pages from reaching a server on localhost. Add the
    # name people use to reach it, e.g. '["tuneboard.example.com"]'; "*" allows any.
    allowed_hosts: list[str] = ["localhost", "127.0.0.1", "::1"]
    # Failed sign-ins allowed per account and per client address in a moving window (the
    # `limits` library's notation); past either, sign-in waits. Counted in memory, or in
    # Redis (e.g. "redis://localhost:6379/1") where several web servers share the counts.
    signin_account_limit: str = "10/15 minutes"
    signin_address_limit: str = "30/15 minutes"
    throttle_storage_url: str = "memory://"

    # Per-user limits: stored upload bytes, and jobs queued or running at once (429 beyond).
    max_storage_bytes_per_user: int = 20 * 1024**3
    max_active_jobs_per_user: int = 20

    # Uploads are streamed to disk and cut off at this size (bytes).
    max_upload_bytes: int = 200 * 1024 * 1024
    # A worker checks each upload (parse, validate) after it is stored; a table file with more
    # rows than this is refused (the rows are held in the checking process's memory).
    max_dataset_rows: int = 1_000_000
    # Every other request body (JSON, forms) is refused over this size (bytes).
    max_body_bytes: int = 512 * 1024
    # Image datasets (ZIPs of class folders): caps that stop archive bombs while extracting,
    # and images over this many pixels are skipped with a reason.
    max_archive_entries: int = 50_000
    max_archive_bytes: int = 4 * 1024**3  # uncompressed
    max_archive_ratio: float = 100.0  # uncompressed / compressed, for members over 1 MiB
    max_image_pixels: int = 40_000_000
    # Prediction runs in long-lived workers that keep what they allocate, so it has caps of
    # its own (worker/predict_images.py). An image that would decode to more pixels than this
    # gets a reason in its row instead of an answer; a JPEG over it is decoded at 1/2 to 1/8
    # scale instead, so only PNG, WebP, BMP and GIF are really refused.
    max_predict_image_pixels: int = 16_000_000
    # A predict worker's pool process whose peak memory passes this many MB is replaced by a
    # fresh one after its task (the worker stays up; models load again on first use). Set it
    # above what the models in use need: three are kept loaded.
    predict_worker_max_rss_mb: int = 3072
    # Extra folders whose subfolders are offered as local Hugging Face models.
    model_roots: list[Path] = []
    # Whether Hub ids may be used; off by default because these machines are offline.
    allow_hub_models: bool = False

    # Threads PyTorch may use in a worker; 0 means one per CPU core.
    torch_threads: int = 0
    # Device slots a training worker announces (worker/device_slots.py): 0 means its GPUs
    # (nvidia-smi) on the gpu queue and 1 on cpu. Set it to override: fewer GPUs than the
    # machine has, or N > 1 on a CPU worker to run data-parallel jobs as N gloo processes.
    worker_devices: int = 0
    # A job waiting for enough free devices is looked at again this often.
    device_wait_seconds: float = 5.0
    # A running job beats about once a second; one silent this long belongs to a dead worker
    # and is re-queued by the next worker housekeeping (up to max_attempts runs, then it fails).
    job_stale_seconds: float = 120.0
    max_attempts: int = 3
    # Workers announce themselves this often (the dashboard lists those heard from within
    # three beats) and do the shared housekeeping (re-queue lost jobs, re-send messages a
    # broker lost) every `maintenance_seconds`.
    worker_beat_seconds: float = 10.0
    maintenance_seconds: float = 30.0
    # A job stops (failed: time limit) at its first step past this many seconds of running,
    # unless it sets its own `time_limit_minutes`, which may go up to the maximum.
    job_time_limit_seconds: float = 24 * 3600
    max_job_time_limit_seconds: float = 7 * 24 * 3600
    # Checkpoints: at the end of every epoch, and mid-epoch when this long has passed.
    checkpoint_every_seconds: float = 600

    # Fair share (RELIABILITY row 30). Non-admin users may ask for a time limit up to this
    # (admins: up to max_job_time_limit_seconds); 422 beyond.
    max_user_job_time_limit_seconds: float = 24 * 3600
    # Per-user playground limits: questions and batch files waiting at once, and asked per
    # minute (429 beyond).
    max_queued_predictions_per_user: int = 10
    max_predictions_per_minute_per_user: int = 30
    # Training workers and the batch-prediction worker lower their CPU priority by this much
    # (the `nice` value, 0-19; 0 keeps the web server's), so pages stay quick while a job
    # trains on the same machine. See README, "A web that stays quick while a job trains".
    worker_nice: int = 10
    # ... and, where Linux offers it, run in its idle scheduling class (SCHED_IDLE): any other
    # process that wants a core (a page request) gets it at once, and training takes every
    # cycle left over. Off: the nice value alone decides.
    worker_sched_idle: bool = True

    @property
    def development(self) -> bool:
        return self.env == "development"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def feature_cache_dir(self) -> Path:
        return self.data_dir / "feature-cache"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"


@lru_cache
def get_settings() -> Settings:
    return Settings()


class ClientSettings(BaseSettings):
    """What the `tuneboard datasets|jobs …` commands read: the server, an API token, and the
    user's config folder, where `tuneboard login` keeps tokens."""

    model_config = SettingsConfigDict(env_prefix="TUNEBOARD_", extra="ignore")

    server: str | None = None
    token: str | None = None
    xdg_config_home: str = Field("", validation_alias="XDG_CONFIG_HOME")

    @property
    def credentials_file(self) -> Path:
        # The XDG rule: an unset, empty or relative XDG_CONFIG_HOME means ~/.config.
        home = Path(self.xdg_config_home)
        base = home if self.xdg_config_home and home.is_absolute() else Path.home() / ".config"
        return base / "tuneboard" / "credentials.json"
