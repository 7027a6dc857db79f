"""The S3-compatible server (S3Proxy, deploy/s3/s3.sh) the suites store Delta Lake tables on.

deploy/test.sh starts one and exports AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION
and VITALFLOW_S3_BUCKET; `s3_connection` reads those. Without them (pytest run by hand) it starts one itself
through s3.sh in a temporary state dir and cleans it up when the session ends.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
S3_SH = ROOT / "deploy" / "s3" / "s3.sh"
ENV_NAMES = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "VITALFLOW_S3_BUCKET")


@dataclass(frozen=True)
class S3Server:
    """Where the server is and who may use it."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str
    bucket: str

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "S3Server":
        return cls(*(env[name] for name in ENV_NAMES))

    def env(self) -> dict[str, str]:
        """The variables deploy/test.sh exports, for a child process (e.g. vitalflow) to read."""
        values = (self.endpoint, self.access_key, self.secret_key, self.region, self.bucket)
        return {**dict(zip(ENV_NAMES, values)), "AWS_ALLOW_HTTP": "true"}

    def url(self, prefix: str) -> str:
        """`s3://bucket/prefix`: a table location."""
        return f"s3://{self.bucket}/{prefix.strip('/')}"

    def delta_storage_options(self) -> dict[str, str]:
        """delta-rs `storage_options` for this server: plain HTTP, and commits made safe by the server's
        conditional PUT (If-None-Match) instead of a DynamoDB lock."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
            "aws_conditional_put": "etag",
        }

    def client(self):
        """A boto3 S3 client (SigV4-signed requests, path-style addressing)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )


def parse_exports(text: str) -> dict[str, str]:
    """`export NAME=value` lines (as s3.sh prints them, shell-quoted) to a dict."""
    values = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            values[name] = value
    return values


def s3_connection(state_dir: Path) -> Iterator[S3Server]:
    """The test script's server if its variables are set, else one started here (state in `state_dir`)."""
    if all(os.environ.get(name) for name in ENV_NAMES):
        yield S3Server.from_env(dict(os.environ))
        return
    env = {**os.environ, "VITALFLOW_S3_DIR": str(state_dir)}
    started = subprocess.run([str(S3_SH), "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        subprocess.run([str(S3_SH), "clean"], env=env, capture_output=True)
        raise RuntimeError(f"deploy/s3/s3.sh start failed ({started.returncode}):\n{started.stderr}")
    try:
        yield S3Server.from_env(parse_exports(started.stdout))
    finally:
        subprocess.run([str(S3_SH), "clean"], env=env, check=True, capture_output=True)
