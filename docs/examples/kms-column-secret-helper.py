#!/usr/bin/env python3
"""An exec secret helper: refresh tokens kept in the platform's PostgreSQL table, each one
encrypted with AWS KMS (a "KMS-encrypted column").

It speaks the Datadog secret_backend_command protocol the agent's `exec` store uses:

- read: stdin {"version": "1.0", "secrets": ["acme-us", ...]}
        stdout {"acme-us": {"value": "Atzr|...", "error": null}, ...}
        (value null and error null: no such connection -> missing_credential)
- write (write_command): stdin {"version": "1.0", "key": "acme-us", "value": "Atzr|..."}
        exit 0 once the encrypted token is stored.

One run answers a whole batch with one query; KMS has no batch decrypt, so each token is one
Decrypt call. Configuration comes from the environment the agent passes (`pass_env`):
DATABASE_URL (a libpq URL), KMS_KEY_ID (for writes), AWS_DEFAULT_REGION and the AWS credential
chain (an instance role, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY); AWS_ENDPOINT_URL points
boto3 at a VPC endpoint (or, in the tests, at moto). Nothing secret goes to stderr: errors name
what failed, never a value.

The table (adapt the names to yours):

    CREATE TABLE connections (account_key text PRIMARY KEY, refresh_token_enc bytea);

Install it owned by the agent's user, mode 0700 (the agent refuses anything else):

    install -m 0700 -o channel-agent kms-column-secret-helper.py /usr/local/bin/
"""

import json
import os
import sys

import boto3
import psycopg

READ = "SELECT account_key, refresh_token_enc FROM connections WHERE account_key = ANY(%s)"
WRITE = "UPDATE connections SET refresh_token_enc = %s WHERE account_key = %s"


def read(db: psycopg.Connection, kms, keys: list[str]) -> dict:
    found = dict(db.execute(READ, (keys,)).fetchall())
    answer = {}
    for key in keys:
        blob = found.get(key)
        if blob is None:
            answer[key] = {"value": None, "error": None}
            continue
        try:
            plaintext = kms.decrypt(CiphertextBlob=bytes(blob))["Plaintext"].decode()
            answer[key] = {"value": plaintext, "error": None}
        except Exception as exc:  # this key only; the others still answer
            answer[key] = {"value": None, "error": f"KMS Decrypt failed: {type(exc).__name__}"}
    return answer


def write(db: psycopg.Connection, kms, key: str, value: str) -> None:
    blob = kms.encrypt(KeyId=os.environ["KMS_KEY_ID"], Plaintext=value.encode())
    updated = db.execute(WRITE, (blob["CiphertextBlob"], key)).rowcount
    if updated != 1:
        sys.exit(f"no connection {key} to update")


def main() -> None:
    request = json.load(sys.stdin)
    if request.get("version") != "1.0":
        sys.exit("unsupported protocol version")
    kms = boto3.client("kms")
    with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=10) as db:
        if "secrets" in request:
            json.dump(read(db, kms, request["secrets"]), sys.stdout)
        else:
            write(db, kms, request["key"], request["value"])


if __name__ == "__main__":
    main()
