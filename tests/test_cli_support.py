"""``postflow suppress``, ``unsuppress`` and ``doctor`` through the real CLI, as a subprocess.

What support staff rely on: a suppression typed by hand reaches every journey as the
reserved event (the next marketing mail to that address is skipped ``suppressed``, and
``unsuppress`` restores it), addresses are normalised, bad ones are refused with a reason;
``doctor`` lists what each channel resolves to and every problem, sending nothing, and
exits 1 when something would stop ``run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from postflow.store import schema as t

CLEAN = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("POSTFLOW_", "SENDGRID_", "TWILIO_", "SHOPIFY_"))
}

NEWS = """\
id: news
trigger: {event: signed_up}
steps:
  - id: hello
    email: {subject: "Hello", body: "Hi", to: "{{ trigger.data.email }}"}
"""


class Done:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    def __repr__(self) -> str:
        return f"exit {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def postflow(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Done:
    done = subprocess.run(
        [sys.executable, "-m", "postflow", *args],
        cwd=cwd,
        env={**CLEAN, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Done(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "news.yaml").write_text(NEWS, encoding="utf-8")
    (tmp_path / "postflow.yaml").write_text(
        "database: sqlite:///pf.db\ntimezone: UTC\ndefault_region: US\n"
        "channels: {email: {provider: console}, sms: {provider: console}}\n",
        encoding="utf-8",
    )
    return tmp_path


def signup(project: Path, customer: str, email: str, at: str) -> None:
    data = json.dumps({"email": email})
    done = postflow(
        project, "event", "signed_up", "--customer", customer, "--data", data, "--at", at
    )
    assert done.returncode == 0, done


def messages(project: Path) -> list[dict[str, Any]]:
    done = postflow(project, "history")
    assert done.returncode == 0, done
    return [r for r in map(json.loads, done.stdout.splitlines()) if r["kind"] == "message"]


def test_suppress_then_unsuppress_reaches_the_journeys(project: Path) -> None:
    done = postflow(project, "suppress", "Ann@Example.COM", "--at", "2027-01-01T00:00:00Z")
    assert done.returncode == 0, done
    assert "ann@example.com suppressed (manual)" in done.stderr
    signup(project, "c_1", "ann@example.com", "2027-01-02T00:00:00Z")
    assert postflow(project, "run", "--once", "--now", "2027-01-02T00:00:00Z").returncode == 0
    done = postflow(project, "unsuppress", "ann@example.com", "--at", "2027-01-03T00:00:00Z")
    assert done.returncode == 0, done
    signup(project, "c_1", "ann@example.com", "2027-01-04T00:00:00Z")
    assert postflow(project, "run", "--once", "--now", "2027-01-04T00:00:00Z").returncode == 0
    assert [(m["at"][:10], m["status"], m.get("reason")) for m in messages(project)] == [
        ("2027-01-02", "skipped", "suppressed"),
        ("2027-01-04", "sent", None),
    ]
    engine = sa.create_engine(f"sqlite:///{project / 'pf.db'}")
    with engine.connect() as conn:
        stored = [json.loads(b) for (b,) in conn.execute(sa.select(t.events.c.body))]
    engine.dispose()
    kinds = [(e["type"], e["data"]) for e in stored if e["type"].startswith("address_")]
    assert kinds == [
        ("address_suppressed", {"address": "ann@example.com", "reason": "manual"}),
        ("address_unsuppressed", {"address": "ann@example.com", "reason": "manual"}),
    ]


def test_unsubscribe_blocks_marketing_only(project: Path) -> None:
    receipt = NEWS.replace("id: news", "id: receipt").replace(
        'body: "Hi",', 'body: "Hi", transactional: true,'
    )
    (project / "journeys" / "receipt.yaml").write_text(receipt, encoding="utf-8")
    done = postflow(
        project,
        "suppress",
        "bob@example.com",
        "--reason",
        "unsubscribe",
        "--at",
        "2027-01-01T00:00:00Z",
    )
    assert done.returncode == 0, done
    signup(project, "c_2", "bob@example.com", "2027-01-02T00:00:00Z")
    postflow(project, "run", "--once", "--now", "2027-01-02T00:00:00Z")
    got = sorted((m["journey"], m["status"], m.get("reason")) for m in messages(project))
    assert got == [("news", "skipped", "suppressed"), ("receipt", "sent", None)]


def test_a_phone_number_is_stored_in_e164_and_files_under_a_given_customer(project: Path) -> None:
    done = postflow(project, "suppress", "(415) 555-2671", "--reason", "stop", "--customer", "c_9")
    assert done.returncode == 0, done
    assert done.stderr.strip() == "+14155552671 suppressed (stop), filed under customer c_9"


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (("suppress", "not-an-address"), "error: 'not-an-address' is not a phone number", 1),
        (("suppress", "a@"), "is not an email address", 1),
        (("suppress", "a@b.example", "--reason", "angry"), "Invalid value for '--reason'", 2),
        (("suppress", "a@b.example", "--at", "yesterday"), "Invalid value for --at", 2),
        (("unsuppress",), "Missing argument 'ADDRESS'", 2),
    ],
)
def test_bad_suppress_input_is_refused_in_words(
    project: Path, args: tuple[str, ...], message: str, code: int
) -> None:
    done = postflow(project, *args)
    assert done.returncode == code, done
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (project / "pf.db").exists() or code == 1


def test_doctor_on_a_console_project_is_clean(project: Path) -> None:
    done = postflow(project, "doctor")
    assert done.returncode == 0, done
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ok", "configuration", "postflow.yaml"]
    assert any(line.split()[:3] == ["ok", "email", "console"] for line in lines)
    assert any(line.split()[:3] == ["ok", "journeys", "1"] for line in lines)
    assert any("will be created on the first run" in line for line in lines)
    assert not (project / "pf.db").exists()  # doctor creates nothing


def test_doctor_names_every_problem_and_exits_1(project: Path) -> None:
    (project / "postflow.yaml").write_text(
        "database: sqlite:///missing-dir/pf.db\ntimezone: UTC\n"
        "channels:\n"
        '  email: {provider: sendgrid, from: "Shop <hi@shop.example>"}\n'
        "  sms: {provider: twilio}\n",
        encoding="utf-8",
    )
    (project / "journeys" / "broken.yaml").write_text("id: broken\nsteps: []\n", encoding="utf-8")
    done = postflow(project, "doctor", env={"SENDGRID_WEBHOOK_PUBLIC_KEY": "bm90IGEga2V5"})
    assert done.returncode == 1, done
    fails = [line for line in done.stdout.splitlines() if line.startswith("fail")]
    text = "\n".join(fails)
    assert "SENDGRID_API_KEY is not set" in text
    assert "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set" in text
    assert "broken.yaml" in text
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY" in text
    assert "missing-dir" in text
    assert done.stderr.strip().endswith("problem(s)")
    assert "Traceback" not in done.stderr


def test_doctor_with_credentials_shows_the_providers(project: Path) -> None:
    (project / "postflow.yaml").write_text(
        "database: sqlite:///pf.db\ntimezone: UTC\n"
        "http: {public_url: https://hooks.example.com}\n"
        'channels: {email: {from: "hi@shop.example"}, sms: {from: "+15005550006"}}\n',
        encoding="utf-8",
    )
    env = {
        "SENDGRID_API_KEY": "SG.x",
        "TWILIO_ACCOUNT_SID": "AC1",
        "TWILIO_AUTH_TOKEN": "t",
        "POSTFLOW_SENDGRID_BASE_URL": "http://127.0.0.1:9",
    }
    assert postflow(project, "db", "upgrade", env=env).returncode == 0
    done = postflow(project, "doctor", env=env)
    assert done.returncode == 0, done
    rows = {line.split()[1]: line for line in done.stdout.splitlines()}
    assert "sendgrid (credentials set, base URL http://127.0.0.1:9)" in rows["email"]
    assert "twilio (credentials set)" in rows["sms"]
    assert "schema 0004" in rows["database"]
    assert "https://hooks.example.com" in done.stdout


def test_doctor_catches_what_would_fail_every_send(project: Path) -> None:
    """Settings the schema cannot see: a base-URL variable that is no URL, a key with a
    pasted newline, an outbox file that cannot be written."""
    (project / "postflow.yaml").write_text(
        "database: sqlite:///pf.db\ntimezone: UTC\n"
        "channels:\n"
        '  email: {from: "hi@shop.example"}\n'
        "  webhook: {provider: file, path: no-such-dir/hooks.jsonl}\n",
        encoding="utf-8",
    )
    for env, expected in (
        ({"SENDGRID_API_KEY": "SG.x\n"}, "SENDGRID_API_KEY: holds spaces or control characters"),
        (
            {"SENDGRID_API_KEY": "SG.x", "POSTFLOW_SENDGRID_BASE_URL": "127.0.0.1:9"},
            "POSTFLOW_SENDGRID_BASE_URL: not a base URL",
        ),
    ):
        done = postflow(project, "doctor", env=env)
        assert done.returncode == 1, done
        fails = "\n".join(line for line in done.stdout.splitlines() if line.startswith("fail"))
        assert expected in fails
        run = postflow(project, "run", "--once", env=env)
        assert run.returncode == 1 and expected in run.stderr, run
    done = postflow(project, "doctor")
    assert done.returncode == 1, done
    assert "channels.webhook.path:" in done.stdout and "no-such-dir" in done.stdout
